//! A deserialized `PolicyConfig` is validated as `build()` validates it, the policy's own rules
//! (a non-empty `name`) included, and a bad field of a section is named with its section.
#![cfg(feature = "serde")]

use palisade::policy::PolicyConfig;

#[test]
fn a_deserialized_policy_config_is_validated_as_build_validates_it() {
    let read = serde_json::from_str::<PolicyConfig>(r#"{"name": ""}"#);
    assert!(read.is_err(), "accepted {read:?}");
    let read = toml::from_str::<PolicyConfig>("name = \"\"\n");
    assert!(read.is_err(), "accepted {read:?}");
}

#[test]
fn a_bad_field_of_a_section_is_named_with_its_section() {
    for (doc, field) in [
        (
            "[circuit_breaker]\nfailure_rate = 1.5\n",
            "circuit_breaker.failure_rate",
        ),
        (
            "[bulkhead]\nmax_concurrent = 0\n",
            "bulkhead.max_concurrent",
        ),
        ("[timeout]\ntimeout = \"0ms\"\n", "timeout.timeout"),
    ] {
        let err = toml::from_str::<PolicyConfig>(doc).unwrap_err().to_string();
        assert!(err.contains(&format!("`{field}`")), "{doc:?}: {err}");
    }
    let err = serde_json::from_str::<PolicyConfig>(r#"{"circuit_breaker": {"failure_rate": 1.5}}"#)
        .unwrap_err()
        .to_string();
    assert!(err.contains("`circuit_breaker.failure_rate`"), "{err}");
    // A section read alone still checks itself, under its own field names.
    let err =
        toml::from_str::<palisade::circuit_breaker::CircuitBreakerConfig>("failure_rate = 1.5\n")
            .unwrap_err()
            .to_string();
    assert!(err.contains("`failure_rate`"), "{err}");
    // Well-formed sections still read.
    let ok = toml::from_str::<PolicyConfig>("[circuit_breaker]\nfailure_rate = 0.25\n").unwrap();
    assert_eq!(ok.circuit_breaker.unwrap().failure_rate, 0.25);
}
