//! Parity of weft's LTX flow-matching scheduler with diffusers 0.42.1
//! (fixtures: scripts/ltx_reference/scheduler.py).

use candle_core::{Device, Tensor};
use weft::model::ltx::scheduler::*;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/ltx");

fn close(a: &[f32], b: &[f32], tol: f32, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: length");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= tol, "{what}[{i}]: {x} vs {y}");
    }
}

fn f64s(v: &serde_json::Value) -> Option<Vec<f64>> {
    v.as_array()
        .map(|a| a.iter().map(|x| x.as_f64().unwrap()).collect())
}

#[test]
fn schedules_match_diffusers() {
    let text = std::fs::read_to_string(format!("{DIR}/scheduler.json")).unwrap();
    let root: serde_json::Value = serde_json::from_str(&text).unwrap();
    let cases = root["cases"].as_array().unwrap();
    assert!(cases.len() >= 15);
    for c in cases {
        let name = c["name"].as_str().unwrap();
        let cfg = SchedulerConfig::from_json(&c["config"].to_string()).unwrap();
        let mut s = FlowMatchEulerScheduler::new(cfg.clone()).unwrap();
        let call = &c["call"];
        let n = call["num_inference_steps"].as_u64().map(|n| n as usize);
        let sig = f64s(&call["sigmas"]);
        let ts = f64s(&call["timesteps"]);
        let mu = call["mu"].as_f64();
        if let Some(len) = call["video_seq_len"].as_u64() {
            // the LTXPipeline path: sigmas and mu from the helpers
            let mine = cfg.mu_for(len as usize);
            assert!(
                (mine - mu.unwrap()).abs() < 1e-12,
                "{name}: mu {mine} vs {mu:?}"
            );
            let ls = ltx_pipeline_sigmas(n.unwrap());
            close(
                &ls.iter().map(|&x| x as f32).collect::<Vec<_>>(),
                &sig.clone()
                    .unwrap()
                    .iter()
                    .map(|&x| x as f32)
                    .collect::<Vec<_>>(),
                0.0,
                name,
            );
            s.set_timesteps_sigmas(&ls, Some(mine)).unwrap();
        } else {
            s.set_timesteps_full(n, sig.as_deref(), ts.as_deref(), mu)
                .unwrap();
        }
        let want_s: Vec<f32> = f64s(&c["sigmas"])
            .unwrap()
            .iter()
            .map(|&x| x as f32)
            .collect();
        let want_t: Vec<f32> = f64s(&c["timesteps"])
            .unwrap()
            .iter()
            .map(|&x| x as f32)
            .collect();
        close(&s.sigmas, &want_s, 1e-6, &format!("{name} sigmas"));
        let ntt = cfg.num_train_timesteps as f32;
        close(
            &s.timesteps,
            &want_t,
            1e-6 * ntt,
            &format!("{name} timesteps"),
        );
        if name.starts_with("static_condition_lq_") {
            let steps = n.unwrap();
            let mine = condition_pipeline_timesteps(steps);
            close(
                &mine,
                &ts.clone()
                    .unwrap()
                    .iter()
                    .map(|&x| x as f32)
                    .collect::<Vec<_>>(),
                0.0,
                name,
            );
        }
    }
}

#[test]
fn steps_match_diffusers() {
    let dev = Device::Cpu;
    let t =
        candle_core::safetensors::load(format!("{DIR}/scheduler_step.safetensors"), &dev).unwrap();
    let v = |k: &str| t[k].flatten_all().unwrap().to_vec1::<f32>().unwrap();

    // plain step at index 3 of the LTXPipeline schedule
    let mut s = FlowMatchEulerScheduler::new(SchedulerConfig::ltx_video()).unwrap();
    let cfg = SchedulerConfig::ltx_video();
    s.set_timesteps_sigmas(&ltx_pipeline_sigmas(10), Some(cfg.mu_for(2048)))
        .unwrap();
    s.set_begin_index(0);
    let (mo, x) = (&t["plain.model_output"], &t["plain.sample"]);
    for i in 0..3 {
        let ts = s.timesteps[i];
        s.step(mo, ts, x).unwrap();
    }
    let ts = s.timesteps[3];
    let prev = s.step(mo, ts, x).unwrap();
    close(
        &prev.flatten_all().unwrap().to_vec1().unwrap(),
        &v("plain.prev"),
        1e-6,
        "plain",
    );

    // LTXConditionPipeline loop body
    let static_cfg = SchedulerConfig {
        use_dynamic_shifting: false,
        shift_terminal: None,
        ..SchedulerConfig::ltx_video()
    };
    let steps = t["token.steps"].to_vec1::<i64>().unwrap();
    let (n, i) = (steps[0] as usize, steps[1] as usize);
    let mut s = FlowMatchEulerScheduler::new(static_cfg.clone()).unwrap();
    let tl: Vec<f64> = condition_pipeline_timesteps(n)
        .iter()
        .map(|&x| x as f64)
        .collect();
    s.set_timesteps_full(Some(n), None, Some(&tl), None)
        .unwrap();
    let tt = s.timesteps[i];
    assert_eq!(tt, v("token.t")[0]);
    let mask = &t["token.mask"];
    let ts = conditioning_timesteps(tt, mask).unwrap();
    close(
        &ts.flatten_all().unwrap().to_vec1().unwrap(),
        &v("token.timestep"),
        0.0,
        "token timesteps",
    );
    let mut s2 = s.clone();
    let den = s2
        .step_per_token(
            &t["token.noise_pred"].neg().unwrap(),
            tt,
            &t["token.latents"],
            &ts,
        )
        .unwrap();
    close(
        &den.flatten_all().unwrap().to_vec1().unwrap(),
        &v("token.denoised"),
        1e-6,
        "token denoised",
    );
    let mut s3 = s.clone();
    let out = condition_step(
        &mut s3,
        &t["token.noise_pred"],
        tt,
        &t["token.latents"],
        Some(mask),
    )
    .unwrap();
    close(
        &out.flatten_all().unwrap().to_vec1().unwrap(),
        &v("token.out"),
        1e-6,
        "token out",
    );
    assert_eq!(s3.step_index(), Some(i + 1));
    let mut s4 = s.clone();
    let un = condition_step(
        &mut s4,
        &t["token.noise_pred"],
        tt,
        &t["token.latents"],
        None,
    )
    .unwrap();
    close(
        &un.flatten_all().unwrap().to_vec1().unwrap(),
        &v("token.uncond"),
        1e-6,
        "token uncond",
    );

    // stochastic sampling with the drawn noise
    let mut s = FlowMatchEulerScheduler::new(SchedulerConfig {
        stochastic_sampling: true,
        ..static_cfg
    })
    .unwrap();
    s.set_timesteps(5, None).unwrap();
    let t0 = s.timesteps[0];
    let prev = s
        .step_with_noise(
            &t["stoch.model_output"],
            t0,
            &t["stoch.sample"],
            Some(&t["stoch.noise"]),
        )
        .unwrap();
    close(
        &prev.flatten_all().unwrap().to_vec1().unwrap(),
        &v("stoch.prev"),
        1e-6,
        "stoch",
    );
    let _ = Tensor::zeros(1, candle_core::DType::F32, &dev);
}

#[test]
fn config_errors_and_defaults() {
    let c = SchedulerConfig::from_json(
        r#"{"_class_name":"FlowMatchEulerDiscreteScheduler","shift_terminal":null}"#,
    )
    .unwrap();
    assert_eq!(c.num_train_timesteps, 1000);
    assert!(SchedulerConfig::from_json(r#"{"use_beta_sigmas":true}"#).is_err());
    assert!(SchedulerConfig::from_json(r#"{"time_shift_type":"cubic"}"#).is_err());
    let mut s = FlowMatchEulerScheduler::new(SchedulerConfig::ltx_video()).unwrap();
    assert!(
        s.set_timesteps(10, None).is_err(),
        "dynamic shifting needs mu"
    );
    assert!((calculate_shift(256, 256, 4096, 0.5, 1.15) - 0.5).abs() < 1e-12);
}
