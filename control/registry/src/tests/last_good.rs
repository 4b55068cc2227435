//! The last-good rule: a rejected resource keeps serving its last good
//! version; a deleted one goes.

use super::{corpus::*, *};
use crate::{source::Scan, state};

fn reload(dir: &TempDir, previous: &MeshState) -> MeshState {
    load_state(dir.path(), &FileOptions::default(), Some(previous))
}

/// As the file registry rebuilds: it knows which file each object came
/// from.
fn rebuild(dir: &TempDir, previous: Option<&state::Loaded>) -> state::Loaded {
    state::build(
        &Scan::read(dir.path(), None),
        &FileOptions::default(),
        previous,
    )
}

fn workload<'a>(state: &'a MeshState, name: &str) -> &'a Workload {
    state.workloads.iter().find(|w| w.name == name).unwrap()
}

#[test]
fn a_rejected_workload_keeps_its_last_good_version() {
    let dir = bookinfo();
    let good = load(&dir);
    dir.write(
        "bookinfo/reviews.yml",
        &REVIEWS.replace("weight: 3", "weight: 500"),
    );
    let bad = reload(&dir, &good);
    assert_eq!(
        shown(&bad, dir.path()),
        [
            "bookinfo/ratings-details.yaml:46:1: info[RM0013] Deployment default/details-v1: \
             apps/v1 Deployment is not an Istio resource; skipped",
            "bookinfo/reviews.yml:28:11: error[RM0203] Workload default/reviews-v2-0: spec.weight: \
             weight 500 is out of range (1-128); keeping the last good version",
        ]
    );
    assert_eq!(workload_names(&bad), workload_names(&good));
    assert_eq!(workload(&bad, "reviews-v2-0").weight, 3);
    // Still bad: still kept (the previous state had it, kept).
    let still = reload(&dir, &bad);
    assert_eq!(workload(&still, "reviews-v2-0").weight, 3);
    assert_eq!(still.version, bad.version);
    // Without a previous state there is nothing to keep.
    let fresh = load(&dir);
    assert!(!workload_names(&fresh).contains(&"default/reviews-v2-0".to_owned()));
    // Fixed: the new version.
    dir.write(
        "bookinfo/reviews.yml",
        &REVIEWS.replace("weight: 3", "weight: 5"),
    );
    let fixed = reload(&dir, &still);
    assert_eq!(workload(&fixed, "reviews-v2-0").weight, 5);
    assert_eq!(fixed.diagnostics.len(), 1);
}

#[test]
fn a_rejected_service_keeps_its_last_good_version_and_deleting_removes_it() {
    let dir = bookinfo();
    let good = load(&dir);
    // A typo: an unknown field.
    dir.write(
        "bookinfo/productpage.yaml",
        &PRODUCTPAGE.replace("selector:", "selectr:"),
    );
    let bad = reload(&dir, &good);
    assert_eq!(
        shown(&bad, dir.path())[0],
        "bookinfo/productpage.yaml:10:12: error[RM0202] Service default/productpage: \
         spec.selectr: unknown field `selectr`, expected one of `ports`, `selector`, \
         `exportTo`; keeping the last good version"
    );
    assert_eq!(bad.services, good.services);
    // Deleting the document deletes the service.
    let without: String = PRODUCTPAGE
        .split("---\n")
        .skip(1)
        .collect::<Vec<_>>()
        .join("---\n");
    dir.write("bookinfo/productpage.yaml", &without);
    let deleted = reload(&dir, &bad);
    assert!(!service_names(&deleted).contains(&"default/productpage".to_owned()));
    assert_eq!(deleted.diagnostics.len(), 1);
    // So does deleting the file, for everything in it.
    dir.remove("bookinfo/productpage.yaml");
    let gone = reload(&dir, &deleted);
    assert!(!workload_names(&gone).contains(&"default/productpage-v1-0".to_owned()));
    assert!(gone
        .istio
        .destination_rules
        .iter()
        .all(|d| d.meta.name != "productpage"));
}

#[test]
fn a_rejected_virtual_service_keeps_its_last_good_version() {
    let dir = bookinfo();
    let good = load(&dir);
    let reviews_vs = |s: &MeshState| {
        s.istio
            .virtual_services
            .iter()
            .find(|v| v.meta.name == "reviews")
            .cloned()
    };
    dir.write(
        "bookinfo/reviews.yml",
        &REVIEWS.replace("weight: 10\n", "weight: 20\n"),
    );
    let bad = reload(&dir, &good);
    assert_eq!(
        shown(&bad, dir.path())[1],
        "bookinfo/reviews.yml:62:15: error[RM0003] VirtualService default/reviews: \
         spec.http[1].route[1].weight: weights sum to 110, not 100; keeping the last good \
         version"
    );
    assert_eq!(reviews_vs(&bad), reviews_vs(&good));
    assert!(reviews_vs(&bad).is_some());
    // A reference the new version breaks (a subset no DestinationRule
    // defines) is a rejection too.
    dir.write(
        "bookinfo/reviews.yml",
        &REVIEWS.replace("subset: v2", "subset: v9"),
    );
    let bad = reload(&dir, &bad);
    assert_eq!(
        shown(&bad, dir.path())[1],
        "bookinfo/reviews.yml:53:17: error[RM0006] VirtualService default/reviews: \
         spec.http[0].route[0].destination.subset: subset \"v9\" is not defined by any \
         DestinationRule for host reviews.default.svc.cluster.local (DestinationRule \
         default/reviews defines v1, v2, v3); keeping the last good version"
    );
    assert_eq!(reviews_vs(&bad), reviews_vs(&good));
    // Deleted from the file: gone.
    let cut = REVIEWS
        .find("apiVersion: networking.istio.io/v1\nkind: VirtualService")
        .unwrap();
    let dr = REVIEWS
        .find("apiVersion: networking.istio.io/v1\nkind: DestinationRule")
        .unwrap();
    dir.write(
        "bookinfo/reviews.yml",
        &format!("{}{}", &REVIEWS[..cut], &REVIEWS[dr..]),
    );
    let deleted = reload(&dir, &bad);
    assert_eq!(reviews_vs(&deleted), None);
    assert_eq!(deleted.istio.virtual_services.len(), 1);
}

#[test]
fn a_file_that_does_not_parse_keeps_what_it_held() {
    let dir = bookinfo();
    let good = rebuild(&dir, None);
    // The VirtualService's document is broken YAML; a Service is deleted
    // from another file at the same time.
    dir.write(
        "bookinfo/reviews.yml",
        &REVIEWS.replace("  hosts:\n  - reviews\n", "  hosts: [reviews\n"),
    );
    let without_details = RATINGS_AND_DETAILS.replace("name: details}", "name: details2}");
    dir.write("bookinfo/ratings-details.yaml", &without_details);
    let bad = rebuild(&dir, Some(&good));
    let shown_bad = shown(&bad.state, dir.path());
    assert!(
        shown_bad.contains(
            &"bookinfo/reviews.yml: warning[RM0206] VirtualService default/reviews: no longer \
              found, but bookinfo/reviews.yml cannot be read or parsed and may define it; keeping \
              the last good version until it is fixed"
                .to_owned()
        ),
        "{shown_bad:#?}"
    );
    assert!(shown_bad.iter().any(|d| d.contains("error[RM0001]")));
    assert_eq!(
        bad.state.istio.virtual_services,
        good.state.istio.virtual_services
    );
    // The deletion elsewhere applies: the file registry knows each
    // object's file.
    assert!(service_names(&bad.state).contains(&"default/details2".to_owned()));
    assert!(!service_names(&bad.state).contains(&"default/details".to_owned()));

    // A file that cannot be read at all keeps everything it held.
    std::fs::write(dir.path().join("bookinfo/productpage.yaml"), b"\xff\xfe").unwrap();
    let unreadable = rebuild(&dir, Some(&bad));
    assert!(service_names(&unreadable.state).contains(&"default/productpage".to_owned()));
    assert!(workload_names(&unreadable.state).contains(&"default/productpage-v1-0".to_owned()));
    assert!(unreadable
        .state
        .istio
        .destination_rules
        .iter()
        .any(|d| d.meta.name == "productpage"));
    assert!(shown(&unreadable.state, dir.path()).contains(
        &"bookinfo/productpage.yaml: warning[RM0206] Service default/productpage: no longer \
          found, but bookinfo/productpage.yaml cannot be read or parsed and may define it; \
          keeping the last good version until it is fixed"
            .to_owned()
    ));

    // Fixed files: everything is current again, and a resource deleted
    // while its file was broken is gone.
    dir.write("bookinfo/productpage.yaml", PRODUCTPAGE);
    dir.write(
        "bookinfo/reviews.yml",
        &REVIEWS.replace("weight: 3", "weight: 2"),
    );
    let fixed = rebuild(&dir, Some(&unreadable));
    assert_eq!(workload(&fixed.state, "reviews-v2-0").weight, 2);
    assert_eq!(fixed.state.diagnostics.len(), 1);
    dir.write(
        "bookinfo/productpage.yaml",
        &PRODUCTPAGE.replace("name: productpage-v1-0", "name: productpage-v1-1"),
    );
    let renamed = rebuild(&dir, Some(&fixed));
    assert!(workload_names(&renamed.state).contains(&"default/productpage-v1-1".to_owned()));
    assert!(!workload_names(&renamed.state).contains(&"default/productpage-v1-0".to_owned()));
}

#[test]
fn without_the_files_of_objects_any_broken_file_holds_deletions() {
    // `load_state` gets only the previous MeshState, which does not say
    // which file a Service came from: while any file is broken, a Service
    // that vanished is kept.
    let dir = bookinfo();
    let good = load(&dir);
    dir.write("broken.yaml", "a: [\n");
    dir.write(
        "bookinfo/ratings-details.yaml",
        &RATINGS_AND_DETAILS.replace("name: details}", "name: details2}"),
    );
    let bad = reload(&dir, &good);
    assert!(service_names(&bad).contains(&"default/details".to_owned()));
    assert!(shown(&bad, dir.path()).contains(
        &"broken.yaml: warning[RM0206] Service default/details: no longer found, but \
          broken.yaml cannot be read or parsed and may define it; keeping the last good \
          version until it is fixed"
            .to_owned()
    ));
    dir.remove("broken.yaml");
    let fixed = reload(&dir, &bad);
    assert!(!service_names(&fixed).contains(&"default/details".to_owned()));
}

#[test]
fn a_missing_directory_keeps_the_last_state() {
    let dir = bookinfo();
    let good = load(&dir);
    let moved = dir.path().with_extension("moved");
    std::fs::rename(dir.path(), &moved).unwrap();
    let during = reload(&dir, &good);
    std::fs::rename(&moved, dir.path()).unwrap();
    assert_eq!(during.services, good.services);
    assert_eq!(during.workloads, good.workloads);
    assert_eq!(during.istio, good.istio);
    assert_eq!(
        during.diagnostics[0].to_string(),
        format!(
            "{}: error[RM0009] the registry directory cannot be read (No such file or \
             directory (os error 2)); keeping the last loaded state",
            dir.path().display()
        )
    );
    assert_eq!(&during.diagnostics[1..], &good.diagnostics[..]);
    assert_ne!(during.version, good.version);
    // Back: the same state as before.
    assert_eq!(reload(&dir, &during).version, good.version);
}
