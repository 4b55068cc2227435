//! RFC 6902 JSON Patch between two JSON values: what the admission
//! webhook answers. Objects are compared key by key; an array that only
//! grew at its end gets `add .../-` operations, any other changed array is
//! replaced whole (the patch applies to exactly the object the API server
//! sent, so a replace is as safe as element moves and far easier to read).

use serde_json::{json, Map, Value};

/// The operations turning `from` into `to` (empty when they are equal).
pub fn diff(from: &Value, to: &Value) -> Vec<Value> {
    let mut ops = Vec::new();
    diff_at(&mut String::new(), from, to, &mut ops);
    ops
}

fn diff_at(path: &mut String, from: &Value, to: &Value, ops: &mut Vec<Value>) {
    if from == to {
        return;
    }
    match (from, to) {
        (Value::Object(a), Value::Object(b)) => diff_objects(path, a, b, ops),
        (Value::Array(a), Value::Array(b))
            if !path.is_empty() && b.len() > a.len() && b[..a.len()] == a[..] =>
        {
            for item in &b[a.len()..] {
                ops.push(json!({"op": "add", "path": format!("{path}/-"), "value": item}));
            }
        }
        _ => ops.push(json!({"op": "replace", "path": path.clone(), "value": to})),
    }
}

fn diff_objects(
    path: &mut String,
    a: &Map<String, Value>,
    b: &Map<String, Value>,
    ops: &mut Vec<Value>,
) {
    for (key, old) in a {
        let len = path.len();
        push_token(path, key);
        match b.get(key) {
            None => ops.push(json!({"op": "remove", "path": path.clone()})),
            Some(new) => diff_at(path, old, new, ops),
        }
        path.truncate(len);
    }
    for (key, new) in b {
        if a.contains_key(key) {
            continue;
        }
        let len = path.len();
        push_token(path, key);
        ops.push(json!({"op": "add", "path": path.clone(), "value": new}));
        path.truncate(len);
    }
}

/// Appends `/token` with RFC 6901 escaping (`~` → `~0`, `/` → `~1`):
/// annotation keys such as `sidecar.ringmesh.io/status` contain slashes.
fn push_token(path: &mut String, token: &str) {
    path.push('/');
    for c in token.chars() {
        match c {
            '~' => path.push_str("~0"),
            '/' => path.push_str("~1"),
            c => path.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small RFC 6902 applier for the operations `diff` emits (add,
    /// remove, replace), so the tests check the patch by its effect.
    fn apply(doc: &mut Value, ops: &[Value]) {
        for op in ops {
            let path = op["path"].as_str().unwrap();
            let tokens: Vec<String> = path
                .split('/')
                .skip(1)
                .map(|t| t.replace("~1", "/").replace("~0", "~"))
                .collect();
            let (last, parents) = tokens.split_last().unwrap();
            let mut target = &mut *doc;
            for t in parents {
                target = match target {
                    Value::Object(m) => m.get_mut(t).unwrap(),
                    Value::Array(v) => &mut v[t.parse::<usize>().unwrap()],
                    _ => panic!("{path}"),
                };
            }
            match (op["op"].as_str().unwrap(), target) {
                ("add" | "replace", Value::Object(m)) => {
                    m.insert(last.clone(), op["value"].clone());
                }
                ("remove", Value::Object(m)) => {
                    m.remove(last);
                }
                ("add", Value::Array(v)) if last == "-" => v.push(op["value"].clone()),
                (o, t) => panic!("{o} at {path} in {t}"),
            }
        }
    }

    #[test]
    fn patches_reproduce_the_target() {
        let from = json!({
            "metadata": {"name": "a", "labels": {"app": "x"}},
            "spec": {"containers": [{"name": "app"}], "volumes": [{"name": "v"}], "gone": 1}
        });
        let to = json!({
            "metadata": {"name": "a", "labels": {"app": "x", "security.istio.io/tlsMode": "istio"},
                         "annotations": {"sidecar.ringmesh.io/status": "{}", "a~b": "1"}},
            "spec": {"containers": [{"name": "proxy"}, {"name": "app"}],
                     "volumes": [{"name": "v"}, {"name": "w"}],
                     "initContainers": [{"name": "init"}]}
        });
        let ops = diff(&from, &to);
        let paths: Vec<&str> = ops.iter().map(|o| o["path"].as_str().unwrap()).collect();
        assert!(
            paths.contains(&"/metadata/labels/security.istio.io~1tlsMode"),
            "{paths:?}"
        );
        assert!(paths.contains(&"/spec/volumes/-"), "{paths:?}");
        assert!(paths.contains(&"/spec/containers"), "{paths:?}");
        assert!(paths.contains(&"/spec/gone"), "{paths:?}");
        let mut patched = from.clone();
        apply(&mut patched, &ops);
        assert_eq!(patched, to);
        assert!(diff(&to, &to).is_empty());
    }

    #[test]
    fn a_changed_root_is_one_replace() {
        assert_eq!(
            diff(&json!([1]), &json!([1, 2])),
            vec![json!({"op": "replace", "path": "", "value": [1, 2]})]
        );
    }
}
