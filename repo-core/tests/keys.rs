//! Key management through the library: the last key is never removed, and a password change
//! that fails between writing the new key and removing the old leaves both working.

#[path = "support/fixture.rs"]
mod fixture;

use fixture::{secret, Fixture};
use repo_core::{ErrorKind, KdfParams, Secret};

#[test]
fn the_last_key_stays_and_keys_open_the_same_repository() {
    let fx = Fixture::memory();
    let keys = fx.repo().keys().unwrap();
    assert_eq!(keys.len(), 1);
    assert!(keys[0].current);
    // Opened with the raw master key, no key file is "in use": the last one is still kept.
    let raw = fx.repo().export_master_key().to_vec();
    let by_key = fx.open(&Secret::MasterKey(raw)).unwrap();
    let err = by_key
        .remove_key(&keys[0].id, std::time::Duration::ZERO)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("last key"), "{err}");

    let added = fx
        .repo()
        .add_key(b"another", KdfParams::insecure_fast())
        .unwrap();
    let other = fx.open(&Secret::password("another")).unwrap();
    assert_eq!(other.config().repo_id, fx.repo().config().repo_id);
    assert!(other
        .keys()
        .unwrap()
        .iter()
        .any(|k| k.id == added && k.current));
    by_key
        .remove_key(&added, std::time::Duration::ZERO)
        .unwrap();
    assert_eq!(
        fx.open(&Secret::password("another")).err().unwrap().kind(),
        ErrorKind::WrongSecret
    );
    assert!(fx.open(&secret()).is_ok());
}
