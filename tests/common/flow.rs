//! A seeded random flow model as `cellsymphony flow train` writes it (`model.safetensors`
//! with the tensor names `engine::flow::FlowSampler::from_safetensors` reads), for tests of
//! the burn-free samplers (CPU and GPU) without training.

use cellsymphony::engine::flow::FlowSpec;
use cellsymphony::util::rng::SplitMix64;
use safetensors::tensor::TensorView;
use safetensors::Dtype;

/// Safetensors bytes of a random flow model of `spec` (burn's layouts: Linear weights
/// `[in, out]`, Conv2d `[out, in, 3, 3]`, ConvTranspose2d `[in, out, 4, 4]`; channels
/// `c, 2c, 2c` as `model::flow`; FiLM MLP width `2·hidden`). Weights are uniform in
/// `±1/√fan_in` (LayerNorm gamma in `1 ± 0.2`, beta and biases small), and the FiLM layers are
/// random rather than burn's zero init, so every path contributes.
pub fn random_flow_model_bytes(spec: &FlowSpec, seed: u64) -> Vec<u8> {
    let mut rng = SplitMix64::new(seed);
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    let mut push = |name: String, shape: Vec<usize>, fan_in: usize, rng: &mut SplitMix64| {
        let n: usize = shape.iter().product();
        let bound = 1.0 / (fan_in.max(1) as f32).sqrt();
        tensors.push((name, shape, rng.uniform_vec(n, -bound, bound)));
    };
    let c = spec.channels;
    let chans = [1, c, 2 * c, 2 * c];
    let s8 = spec.patch_px / 8;
    let flat = 2 * c * s8 * s8;
    for i in 0..3 {
        push(format!("ae.enc.{i}.weight"), vec![chans[i + 1], chans[i], 3, 3], chans[i] * 9, &mut rng);
        push(format!("ae.enc.{i}.bias"), vec![chans[i + 1]], chans[i] * 9 * 16, &mut rng);
    }
    for (j, i) in (0..3).rev().enumerate() {
        push(format!("ae.dec.{j}.weight"), vec![chans[i + 1], chans[i], 4, 4], chans[i + 1] * 4, &mut rng);
        push(format!("ae.dec.{j}.bias"), vec![chans[i]], chans[i + 1] * 64, &mut rng);
    }
    let mut linear = |prefix: &str, i: usize, o: usize, rng: &mut SplitMix64| {
        push(format!("{prefix}.weight"), vec![i, o], i, rng);
        push(format!("{prefix}.bias"), vec![o], i * 16, rng);
    };
    let (h, p) = (spec.hidden, spec.pert_dim);
    linear("ae.to_latent", flat, spec.latent, &mut rng);
    linear("ae.from_latent", spec.latent, flat, &mut rng);
    linear("net.pert.fc1", p + spec.dg_components, p, &mut rng);
    linear("net.pert.fc2", p, p, &mut rng);
    linear("net.input", spec.latent, h, &mut rng);
    linear("net.cond", spec.time_dim + p + spec.cell_dim, h, &mut rng);
    for b in 0..spec.blocks {
        linear(&format!("net.blocks.{b}.film"), h, 2 * h, &mut rng);
        linear(&format!("net.blocks.{b}.fc1"), h, 2 * h, &mut rng);
        linear(&format!("net.blocks.{b}.fc2"), 2 * h, h, &mut rng);
    }
    linear("net.out", h, spec.latent, &mut rng);
    let mut norm = |prefix: String, dim: usize, rng: &mut SplitMix64| {
        tensors.push((format!("{prefix}.gamma"), vec![dim], rng.uniform_vec(dim, 0.8, 1.2)));
        tensors.push((format!("{prefix}.beta"), vec![dim], rng.uniform_vec(dim, -0.1, 0.1)));
    };
    norm("net.cell_norm".to_string(), spec.cell_dim, &mut rng);
    for b in 0..spec.blocks {
        norm(format!("net.blocks.{b}.norm"), h, &mut rng);
    }
    tensors.push(("net.pert.token.weight".to_string(), vec![spec.n_transitions, p], rng.uniform_vec(spec.n_transitions * p, -1.0, 1.0)));
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors.into_iter().map(|(n, s, v)| (n, s, v.iter().flat_map(|x| x.to_le_bytes()).collect())).collect();
    let views: Vec<(&str, TensorView<'_>)> = bytes.iter().map(|(n, s, b)| (n.as_str(), TensorView::new(Dtype::F32, s.clone(), b).expect("tensor view"))).collect();
    safetensors::serialize(views, None).expect("serialize flow model")
}
