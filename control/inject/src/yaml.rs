//! `ringmesh inject -f`: objects with pod templates, in multi-document
//! YAML. Documents that are not injected are copied byte for byte, so
//! injecting the output again changes nothing.

use serde_json::Value;

use crate::{
    pod::{decide, inject_pod_spec, Decision, PodContext},
    InjectError, Settings,
};

/// What happened to one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectOutcome {
    /// `Kind/name` (`Deployment/reviews`).
    pub object: String,
    pub decision: Decision,
}

/// What happened in one YAML document (a `List` holds several objects).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentReport {
    /// 1-based document number.
    pub document: usize,
    pub objects: Vec<ObjectOutcome>,
}

/// The pod template of an object of `kind`, and the workload name it
/// stands for (a bare Pod names its workload from its owner).
fn template_path(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "Pod" => &[],
        "Deployment"
        | "StatefulSet"
        | "DaemonSet"
        | "ReplicaSet"
        | "ReplicationController"
        | "Job" => &["spec", "template"],
        "CronJob" => &["spec", "jobTemplate", "spec", "template"],
        _ => return None,
    })
}

/// Injects into `object` (any kind; kinds without a pod template are left
/// alone) in place. `namespace` is used for objects that name none.
pub fn inject_object(
    object: &mut Value,
    namespace: &str,
    settings: &Settings,
) -> Result<Vec<ObjectOutcome>, InjectError> {
    let kind = object["kind"].as_str().unwrap_or("").to_string();
    let name = object["metadata"]["name"]
        .as_str()
        .or_else(|| object["metadata"]["generateName"].as_str())
        .unwrap_or("")
        .to_string();
    let label = format!("{}/{}", if kind.is_empty() { "?" } else { &kind }, name);
    if kind == "List" || (kind.ends_with("List") && object["items"].is_array()) {
        let mut out = Vec::new();
        if let Some(items) = object["items"].as_array_mut() {
            for item in items {
                out.extend(inject_object(item, namespace, settings)?);
            }
        }
        return Ok(out);
    }
    let Some(path) = template_path(&kind) else {
        let why = if kind.is_empty() {
            "no kind".to_string()
        } else {
            format!("a {kind} has no pod template")
        };
        return Ok(vec![ObjectOutcome {
            object: label,
            decision: Decision::Skip(why),
        }]);
    };
    let namespace = object["metadata"]["namespace"]
        .as_str()
        .filter(|s| !s.is_empty())
        .unwrap_or(namespace)
        .to_string();
    let workload = (kind != "Pod").then(|| name.clone());
    let mut template = &mut *object;
    for key in path {
        template = template
            .get_mut(*key)
            .filter(|v| v.is_object())
            .ok_or_else(|| {
                InjectError::Malformed(format!("{label}: {} is missing", path.join(".")))
            })?;
    }
    let decision = decide(template, &namespace, true);
    if decision == Decision::Inject {
        let ctx = PodContext::from_template(template, &namespace, workload.as_deref());
        inject_pod_spec(template, &ctx, settings)
            .map_err(|e| InjectError::Malformed(format!("{label}: {e}")))?;
    }
    Ok(vec![ObjectOutcome {
        object: label,
        decision,
    }])
}

/// A `---` line starts a new document (with optional content after a
/// space, e.g. `--- # comment`).
fn is_separator(line: &str) -> bool {
    let line = line.trim_end_matches(['\r', '\n']);
    line == "---" || line.starts_with("--- ")
}

/// Injects every object of a multi-document YAML stream. Returns the new
/// stream and a report per document.
pub fn inject_yaml(
    text: &str,
    namespace: &str,
    settings: &Settings,
) -> Result<(String, Vec<DocumentReport>), InjectError> {
    settings.validate()?;
    // (separator line, body) per document; the first has no separator
    // unless the stream starts with one.
    let mut docs: Vec<(String, String)> = vec![(String::new(), String::new())];
    for line in text.split_inclusive('\n') {
        if is_separator(line) {
            docs.push((line.to_string(), String::new()));
        } else {
            docs.last_mut().expect("never empty").1.push_str(line);
        }
    }
    let mut out = String::with_capacity(text.len() * 2);
    let mut reports = Vec::new();
    let mut number = 0;
    for (separator, body) in docs {
        out.push_str(&separator);
        let value: Value = match serde_yaml_ng::from_str(&body) {
            Ok(v) => v,
            Err(e) => return Err(InjectError::Yaml(format!("document {}: {e}", number + 1))),
        };
        if value.is_null() {
            // Empty or only comments.
            out.push_str(&body);
            continue;
        }
        number += 1;
        let mut object = value;
        let outcomes = inject_object(&mut object, namespace, settings)
            .map_err(|e| InjectError::Malformed(format!("document {number}: {e}")))?;
        if outcomes.iter().any(|o| o.decision == Decision::Inject) {
            let yaml = serde_yaml_ng::to_string(&object)
                .map_err(|e| InjectError::Yaml(format!("document {number}: {e}")))?;
            out.push_str(&yaml);
        } else {
            out.push_str(&body);
        }
        reports.push(DocumentReport {
            document: number,
            objects: outcomes,
        });
    }
    Ok((out, reports))
}
