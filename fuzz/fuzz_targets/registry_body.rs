//! Registry registration bodies (`POST /v1/services`): any bytes give a spec or an error message,
//! never a panic; an accepted spec respects the documented bounds.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match gogate_actors::registry::spec::parse_spec(data) {
        Ok(spec) => {
            assert!(!spec.name.is_empty());
            assert!(spec.weight <= gogate_config::validate::MAX_WEIGHT);
            assert!(spec.ttl.is_none_or(|t| !t.is_zero()));
        }
        Err(msg) => assert!(!msg.is_empty()),
    }
});
