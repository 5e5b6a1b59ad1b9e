//! Forget through the library: a plan removes what it listed, nothing else, and a plan that
//! no longer holds when it is carried out removes nothing.

#[path = "support/fixture.rs"]
mod fixture;

use fixture::{ctx, write, Fixture};
use repo_core::{BackupOptions, ErrorKind, ForgetOptions, LocalTime, RetentionPolicy};

const DAY: i64 = 86_400_000_000_000;

fn utc(ns: i64) -> LocalTime {
    LocalTime::at_offset(ns, 0)
}

fn backup_on_day(fx: &mut Fixture, src: &std::path::Path, day: i64) {
    let mut opts = BackupOptions::default();
    opts.time_ns = Some(1_800_000_000_000_000_000 + day * DAY);
    let _ = fx.backup(&[src], &opts);
}

#[test]
fn a_plan_removes_what_it_lists_and_a_stale_plan_removes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    write(&src.join("f"), b"content");
    let mut fx = Fixture::memory();
    for day in 0..6 {
        backup_on_day(&mut fx, &src, day);
    }
    let mut opts = ForgetOptions::default();
    let mut policy = RetentionPolicy::default();
    policy.last = 2;
    opts.policy = policy;
    let plan = fx.repo().plan_forget(&ctx(), &opts, &utc).unwrap();
    let removed = plan.removed();
    assert_eq!(removed.len(), 4);
    assert_eq!(
        fx.repo().snapshots(&ctx()).unwrap().len(),
        6,
        "planning removes nothing"
    );

    // A snapshot saved after planning: the plan no longer holds (it would now remove one
    // more), so carrying it out removes nothing.
    backup_on_day(&mut fx, &src, 6);
    let err = fx.repo().forget(&ctx(), &plan, &utc).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert_eq!(fx.repo().snapshots(&ctx()).unwrap().len(), 7);

    let plan = fx.repo().plan_forget(&ctx(), &opts, &utc).unwrap();
    let gone = fx.repo().forget(&ctx(), &plan, &utc).unwrap();
    assert_eq!(gone, plan.removed());
    let left = fx.repo().snapshots(&ctx()).unwrap();
    assert_eq!(left.len(), 2);
    assert!(left.iter().all(|s| !gone.contains(&s.id)));
    // What is left restores and checks clean: forget removed snapshot files only.
    let report = fx.check(true);
    assert!(report.problems.is_empty(), "{:?}", report.problems);

    // An empty policy is refused.
    let err = fx
        .repo()
        .plan_forget(&ctx(), &ForgetOptions::default(), &utc)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
}
