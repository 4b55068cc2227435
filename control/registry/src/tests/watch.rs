//! The file registry: first load, then changes within a second.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::sync::watch::Receiver;

use super::{corpus::*, *};

/// The bound the registry promises for picking up a change.
const WITHIN: Duration = Duration::from_secs(1);

fn fast() -> FileOptions {
    FileOptions {
        poll_interval: Duration::from_millis(20),
        ..FileOptions::default()
    }
}

/// Wait (at most [`WITHIN`]) for a published state that satisfies `want`;
/// returns it and how long it took.
async fn until(
    states: &mut Receiver<Arc<MeshState>>,
    what: &str,
    want: impl Fn(&MeshState) -> bool,
) -> (Arc<MeshState>, Duration) {
    let start = Instant::now();
    loop {
        {
            let state = states.borrow_and_update().clone();
            if want(&state) {
                return (state, start.elapsed());
            }
        }
        let left = WITHIN
            .checked_sub(start.elapsed())
            .unwrap_or_else(|| panic!("{what}: not seen within {WITHIN:?}"));
        match tokio::time::timeout(left, states.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => panic!("{what}: the registry stopped"),
            Err(_) => panic!("{what}: not seen within {WITHIN:?}"),
        }
    }
}

/// No new state is published for `quiet`.
async fn nothing_published(states: &mut Receiver<Arc<MeshState>>, quiet: Duration) {
    states.borrow_and_update();
    tokio::time::sleep(quiet).await;
    assert!(
        !states.has_changed().unwrap(),
        "a state was published: {:#?}",
        states.borrow().diagnostics
    );
}

fn new_service(name: &str, port: u16) -> String {
    format!(
        "apiVersion: registry.ringmesh.io/v1\nkind: Service\nmetadata: {{name: {name}}}\n\
         spec:\n  ports: [{{name: http, port: {port}}}]\n  selector: {{app: {name}}}\n"
    )
}

fn has_service(state: &MeshState, name: &str) -> bool {
    state.services.iter().any(|s| s.name == name)
}

fn port_of(state: &MeshState, name: &str) -> Option<u16> {
    state
        .services
        .iter()
        .find(|s| s.name == name)
        .map(|s| s.ports[0].port)
}

#[tokio::test]
async fn start_on_a_missing_directory_says_what_to_do() {
    let dir = TempDir::new("missing");
    let missing = dir.path().join("mesh");
    let err = FileRegistry::start(&missing, FileOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    assert_eq!(
        err.to_string(),
        format!(
            "the registry directory {0} does not exist: create it (mkdir -p {0}) and put the \
             mesh's Service, Workload and Istio YAML files in it, or give the directory that \
             holds them",
            missing.display()
        )
    );
    dir.write("file.yaml", "");
    let err = FileRegistry::start(dir.path().join("file.yaml"), FileOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert!(err.to_string().ends_with(
        "file.yaml is not a directory: the registry reads a directory of YAML files; give the \
         directory that holds it"
    ));
}

#[tokio::test]
async fn the_first_state_is_complete() {
    let dir = bookinfo();
    let registry = FileRegistry::start(dir.path(), fast()).await.unwrap();
    let state = registry.current();
    assert_eq!(*state, load(&dir));
    assert_eq!(state.services.len(), 5);
    assert_eq!(*registry.watch().borrow().clone(), *state);
    assert_eq!(registry.dir(), dir.path());
}

#[tokio::test]
async fn picks_up_add_modify_rename_and_delete() {
    let dir = bookinfo();
    let registry = FileRegistry::start(dir.path(), fast()).await.unwrap();
    let mut states = registry.watch();
    let first = registry.current();

    dir.write("extra/cart.yaml", &new_service("cart", 8080));
    let (added, _) = until(&mut states, "added file", |s| has_service(s, "cart")).await;
    assert_ne!(added.version, first.version);

    // Same size, written right away: the mtime may not move, the content
    // hash does.
    dir.write("extra/cart.yaml", &new_service("cart", 8081));
    until(&mut states, "modified file", |s| {
        port_of(s, "cart") == Some(8081)
    })
    .await;

    // An editor's save: write a temporary file, rename it over the file.
    let tmp = dir.path().join("extra/.cart.yaml.swp");
    std::fs::write(&tmp, new_service("cart", 8082)).unwrap();
    std::fs::rename(&tmp, dir.path().join("extra/cart.yaml")).unwrap();
    until(&mut states, "renamed over", |s| {
        port_of(s, "cart") == Some(8082)
    })
    .await;

    // Renamed to a name the registry does not read: gone.
    std::fs::rename(
        dir.path().join("extra/cart.yaml"),
        dir.path().join("extra/cart.yaml.bak"),
    )
    .unwrap();
    until(&mut states, "renamed away", |s| !has_service(s, "cart")).await;

    // Back, then deleted, with a whole Istio file removed too.
    std::fs::rename(
        dir.path().join("extra/cart.yaml.bak"),
        dir.path().join("extra/cart.yml"),
    )
    .unwrap();
    until(&mut states, "renamed back", |s| has_service(s, "cart")).await;
    dir.remove("extra/cart.yml");
    dir.remove("bookinfo/reviews.yml");
    let (last, _) = until(&mut states, "deleted", |s| {
        !has_service(s, "cart") && !has_service(s, "reviews")
    })
    .await;
    assert!(last
        .istio
        .virtual_services
        .iter()
        .all(|v| v.meta.name != "reviews"));
    assert_eq!(registry.current().version, last.version);
}

#[tokio::test]
async fn the_default_poll_interval_sees_a_change_within_a_second() {
    let dir = bookinfo();
    let registry = FileRegistry::start(dir.path(), FileOptions::default())
        .await
        .unwrap();
    let mut states = registry.watch();
    dir.write("cart.yaml", &new_service("cart", 8080));
    let (_, took) = until(&mut states, "added file", |s| has_service(s, "cart")).await;
    assert!(took < WITHIN, "{took:?}");
}

#[tokio::test]
async fn publishes_only_when_the_content_changes() {
    let dir = bookinfo();
    let registry = FileRegistry::start(dir.path(), fast()).await.unwrap();
    let mut states = registry.watch();
    let first = registry.current();
    // Rewritten with the same bytes, and a new file holding only a comment.
    dir.write("bookinfo/reviews.yml", REVIEWS);
    dir.write("notes.yaml", "# nothing here yet\n");
    nothing_published(&mut states, Duration::from_millis(300)).await;
    assert_eq!(registry.current().version, first.version);
    // A real change is published.
    dir.write("notes.yaml", &new_service("cart", 8080));
    until(&mut states, "real change", |s| has_service(s, "cart")).await;
}

#[tokio::test]
async fn a_bad_edit_keeps_the_last_good_version_live() {
    let dir = bookinfo();
    let registry = FileRegistry::start(dir.path(), fast()).await.unwrap();
    let mut states = registry.watch();
    dir.write(
        "bookinfo/reviews.yml",
        &REVIEWS.replace("address: 127.0.0.4", "address: 127.0.0"),
    );
    let (bad, _) = until(&mut states, "rejection", |s| {
        s.diagnostics.iter().any(|d| d.is_error())
    })
    .await;
    let v2 = bad
        .workloads
        .iter()
        .find(|w| w.name == "reviews-v2-0")
        .unwrap();
    assert_eq!(v2.address.to_string(), "127.0.0.4");
    assert!(bad
        .diagnostics
        .iter()
        .any(|d| d.message.ends_with("; keeping the last good version")));
}

#[tokio::test]
async fn a_vanished_directory_keeps_the_last_state_until_it_is_back() {
    let dir = bookinfo();
    let registry = FileRegistry::start(dir.path(), fast()).await.unwrap();
    let mut states = registry.watch();
    let first = registry.current();
    let moved = dir.path().with_extension("away");
    std::fs::rename(dir.path(), &moved).unwrap();
    let (during, _) = until(&mut states, "directory gone", |s| {
        s.diagnostics.first().is_some_and(|d| d.code == "RM0009")
    })
    .await;
    assert_eq!(during.services, first.services);
    assert_eq!(during.istio, first.istio);
    std::fs::rename(&moved, dir.path()).unwrap();
    until(&mut states, "directory back", |s| {
        s.version == first.version
    })
    .await;
}

#[tokio::test]
async fn dropping_the_registry_stops_it() {
    let dir = bookinfo();
    let registry = FileRegistry::start(dir.path(), fast()).await.unwrap();
    let mut states = registry.watch();
    drop(registry);
    let end = tokio::time::timeout(WITHIN, states.changed()).await;
    assert!(matches!(end, Ok(Err(_))), "{end:?}");
}
