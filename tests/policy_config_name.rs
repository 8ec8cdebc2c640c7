//! A deserialized `PolicyConfig` is validated as `build()` validates it, the policy's own rules
//! (a non-empty `name`) included.
#![cfg(feature = "serde")]

use palisade::policy::PolicyConfig;

#[test]
fn a_deserialized_policy_config_is_validated_as_build_validates_it() {
    let read = serde_json::from_str::<PolicyConfig>(r#"{"name": ""}"#);
    assert!(read.is_err(), "accepted {read:?}");
    let read = toml::from_str::<PolicyConfig>("name = \"\"\n");
    assert!(read.is_err(), "accepted {read:?}");
}
