//! Config parse + validate: any bytes give a config or located errors, never a panic; a config
//! that loads loads again from its own serialisation (what `GET /config` shows) unchanged.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // No file I/O while fuzzing: key files referenced by a `jwt:` block count as unreadable.
    let loaded = gogate_config::prepare(text, None)
        .and_then(|p| p.finish(&gogate_config::KeyFiles::new()));
    match loaded {
        Ok(cfg) => {
            // Every error path names something; a valid config has no validation errors.
            assert!(gogate_config::validate::validate(&cfg).is_empty());
        }
        Err(errors) => {
            assert!(!errors.to_string().is_empty());
        }
    }
});
