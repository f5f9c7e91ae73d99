//! `ingot devices` and `--device N|NAME` as a user runs them, on the tiny Qwen2 fixture:
//! the list shows each adapter with its index and name; either one opens that adapter
//! (a software one such as lavapipe included, without INGOT_WGPU_ALLOW_SOFTWARE); an index
//! out of range, an unknown name, or `--device` with `--backend cpu` fail with a message
//! that says why. Without any adapter the opening checks are skipped, unless
//! INGOT_REQUIRE_GPU=1 (CI, where lavapipe is installed) makes that a failure.

use std::process::{Command, Output};

fn ingot(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ingot"))
        .args(args)
        .env_remove("INGOT_WGPU_ALLOW_SOFTWARE")
        .output()
        .expect("ingot runs")
}

fn generate_on(device_args: &[&str]) -> Output {
    let fixture = format!("{}/../../testdata/tiny-qwen2", env!("CARGO_MANIFEST_DIR"));
    let mut args = vec![
        "generate",
        "Hello there",
        "--raw",
        "--max-tokens",
        "3",
        "--temperature",
        "0",
        "--model",
        &fixture,
        "--kv-cache-memory",
        "16MiB",
    ];
    args.extend_from_slice(device_args);
    ingot(&args)
}

/// (index, name) of each adapter `ingot devices` lists.
fn listed() -> Vec<(usize, String)> {
    let out = ingot(&["devices"]);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{stdout}");
    let mut lines = stdout.lines();
    let header = lines.next().expect("a first line");
    if header.starts_with("no GPU adapter") {
        return Vec::new();
    }
    assert!(header.starts_with("index  name"), "{stdout}");
    let name_at = header.find("name").unwrap();
    let backend_at = header.find("backend").unwrap();
    lines
        .map(|l| {
            let index = l[..name_at].trim().parse().expect("an index first");
            (index, l[name_at..backend_at].trim().to_string())
        })
        .collect()
}

#[test]
fn device_by_index_or_name_opens_that_adapter() {
    let adapters = listed();
    if adapters.is_empty() {
        assert!(
            std::env::var("INGOT_REQUIRE_GPU").as_deref() != Ok("1"),
            "INGOT_REQUIRE_GPU=1 but `ingot devices` lists no adapter"
        );
        eprintln!("skipped: no GPU adapter");
        return;
    }
    for (i, (index, _)) in adapters.iter().enumerate() {
        assert_eq!(*index, i, "indices count from 0 in order: {adapters:?}");
    }
    let (index, name) = &adapters[0];
    let out = generate_on(&["--device", &index.to_string()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("backend: GPU (--device {index}), {name}")),
        "{stderr}"
    );
    // By name, where the name is one adapter's alone (several GPUs of one model share it).
    if adapters.iter().filter(|(_, n)| n == name).count() == 1 {
        let out = generate_on(&["--device", name]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        assert!(stderr.contains(&format!("), {name}")), "{stderr}");
    }
}

#[test]
fn unknown_devices_fail_with_the_list() {
    let n = listed().len();
    let out = generate_on(&["--device", &n.to_string()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!("--device {n}: no such adapter")),
        "{stderr}"
    );
    assert!(stderr.contains("ingot devices"), "{stderr}");

    let out = generate_on(&["--device", "no-such-gpu-xyz"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("\"no-such-gpu-xyz\": no adapter has that name"),
        "{stderr}"
    );

    let out = generate_on(&["--device", "0", "--backend", "cpu"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("cannot be used with --backend cpu"),
        "{stderr}"
    );
}
