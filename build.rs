//! Compiles the default model into the library when `models/default/` holds
//! one (`config.json` + `model.safetensors`); see `Model::embedded`.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(weft_default_model)");
    println!("cargo::rerun-if-changed=models/default/config.json");
    println!("cargo::rerun-if-changed=models/default/model.safetensors");
    let dir = std::path::Path::new("models/default");
    if dir.join("config.json").is_file() && dir.join("model.safetensors").is_file() {
        println!("cargo::rustc-cfg=weft_default_model");
    }
}
