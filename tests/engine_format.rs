//! Model file format (safetensors + metadata), input alignment and normalisation.
//! CPU only; no GPU needed.

mod common;

use std::borrow::Cow;
use std::collections::HashMap;

use cellsymphony::util::rng::SplitMix64;
use cellsymphony::engine::{
    align_to_panel, expected_tensors, normalise_log1p_cp10k, ClassifierConfig, EngineModel,
    ModelFileError, ModelMeta, Quantization, METADATA_KEY,
};
use common::{names, random_model};
use safetensors::{Dtype, SafeTensors, View};

/// A small random model (G = 37, C = 5, 2 layers) with some training info.
fn small_model() -> EngineModel {
    let config = ClassifierConfig {
        n_layers: 2,
        ..ClassifierConfig::new(37, 5)
    };
    let mut m = random_model(config, 99);
    m.meta.training = serde_json::json!({"epochs": 3, "val_accuracy": 0.91, "notes": ["seeded"]});
    m
}

/// An owned tensor for rewriting files in tests.
struct T {
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl View for &T {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

/// Re-serialises `bytes` after `edit` changes the tensor map and/or the metadata JSON.
fn rewrite(
    bytes: &[u8],
    edit: impl FnOnce(&mut HashMap<String, T>, &mut Option<String>),
) -> Vec<u8> {
    let st = SafeTensors::deserialize(bytes).unwrap();
    let (_, header) = SafeTensors::read_metadata(bytes).unwrap();
    let mut tensors: HashMap<String, T> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| {
            (
                n,
                T {
                    dtype: v.dtype(),
                    shape: v.shape().to_vec(),
                    data: v.data().to_vec(),
                },
            )
        })
        .collect();
    let mut meta = header
        .metadata()
        .as_ref()
        .and_then(|m| m.get(METADATA_KEY).cloned());
    edit(&mut tensors, &mut meta);
    let info = meta.map(|m| HashMap::from([(METADATA_KEY.to_string(), m)]));
    safetensors::serialize(tensors.iter().map(|(n, t)| (n.as_str(), t)), info).unwrap()
}

/// Edits the metadata JSON as a `serde_json::Value`.
fn rewrite_meta(bytes: &[u8], edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    rewrite(bytes, |_, meta| {
        let mut v: serde_json::Value = serde_json::from_str(meta.as_ref().unwrap()).unwrap();
        edit(&mut v);
        *meta = Some(v.to_string());
    })
}

fn load_err(bytes: &[u8]) -> ModelFileError {
    match EngineModel::from_safetensors_bytes(bytes) {
        Ok(_) => panic!("expected an error"),
        Err(e) => {
            eprintln!("-> {e}");
            e
        }
    }
}

#[test]
fn roundtrip_f32() {
    let m = small_model();
    let bytes = m.to_safetensors_bytes().unwrap();
    let back = EngineModel::from_safetensors_bytes(&bytes).unwrap();
    assert_eq!(back, m);
    assert!(!back.is_int8());
    assert_eq!(back.meta.training["epochs"], 3);
}

#[test]
fn roundtrip_int8() {
    let m = small_model().quantize_int8();
    assert!(m.is_int8());
    assert_eq!(m.meta.quantization, Quantization::Int8PerChannelSymmetric);
    assert!(
        m.weights
            .layers
            .iter()
            .all(|l| l.q.is_int8() && l.fc2.is_int8())
            && m.weights.head.is_int8()
    );
    let bytes = m.to_safetensors_bytes().unwrap();
    let back = EngineModel::from_safetensors_bytes(&bytes).unwrap();
    assert_eq!(back, m);
    // Quantising again is a no-op.
    assert_eq!(back.quantize_int8(), m);
}

#[test]
fn files_contain_exactly_the_expected_tensors() {
    for m in [small_model(), small_model().quantize_int8()] {
        let bytes = m.to_safetensors_bytes().unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let specs = expected_tensors(m.config(), m.meta.quantization);
        assert_eq!(st.len(), specs.len());
        for s in &specs {
            let v = st
                .tensor(&s.name)
                .unwrap_or_else(|_| panic!("{} missing", s.name));
            assert_eq!(v.shape(), s.shape.as_slice(), "{}", s.name);
            assert_eq!(v.dtype().to_string(), s.dtype, "{}", s.name);
        }
        // Spot-check names and shapes from the contract (T*D = 256, G = 37, D = 64, F = 128).
        let find = |n: &str| {
            specs
                .iter()
                .find(|s| s.name == n)
                .unwrap_or_else(|| panic!("{n}"))
                .shape
                .clone()
        };
        if m.is_int8() {
            assert_eq!(find("gene_embedding.weight_q"), vec![256, 37]);
            assert_eq!(find("layers.1.ffn.fc2.weight_scale"), vec![64]);
        } else {
            assert_eq!(find("gene_embedding.weight"), vec![256, 37]);
            assert_eq!(find("layers.1.ffn.fc1.weight"), vec![128, 64]);
        }
        assert_eq!(find("token_type"), vec![4, 64]);
        assert_eq!(find("layers.0.attn.o.bias"), vec![64]);
        assert_eq!(find("head.bias"), vec![5]);
        // Metadata JSON carries the documented keys.
        let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
        let json: serde_json::Value =
            serde_json::from_str(&header.metadata().as_ref().unwrap()[METADATA_KEY]).unwrap();
        assert_eq!(json["format_version"], 1);
        assert_eq!(json["architecture"], "gene_only");
        assert_eq!(json["config"]["d_model"], 64);
        assert_eq!(json["config"]["layer_norm_eps"], 1e-5);
        assert_eq!(json["normalisation"]["kind"], "log1p_cp10k");
        assert_eq!(json["normalisation"]["target_sum"], 10000.0);
        assert_eq!(
            json["quantization"],
            if m.is_int8() {
                "int8_per_channel_symmetric"
            } else {
                "none"
            }
        );
        assert_eq!(json["genes"].as_array().unwrap().len(), 37);
    }
}

#[test]
fn truncated_file_is_an_error_not_a_panic() {
    let bytes = small_model()
        .quantize_int8()
        .to_safetensors_bytes()
        .unwrap();
    for cut in [0, 1, 7, 8, 9, 50, bytes.len() / 2, bytes.len() - 1] {
        let e = load_err(&bytes[..cut]);
        assert!(
            matches!(e, ModelFileError::Safetensors { .. }),
            "cut at {cut}: {e}"
        );
    }
}

#[test]
fn corrupt_header_is_an_error_not_a_panic() {
    let bytes = small_model().to_safetensors_bytes().unwrap();
    // Header length pointing past the end of the file.
    let mut b = bytes.clone();
    b[..8].copy_from_slice(&(bytes.len() as u64 * 2).to_le_bytes());
    assert!(matches!(load_err(&b), ModelFileError::Safetensors { .. }));
    // Absurd header length.
    b[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(load_err(&b), ModelFileError::Safetensors { .. }));
    // Broken JSON.
    let mut b = bytes.clone();
    b[8] = b'x';
    assert!(matches!(load_err(&b), ModelFileError::Safetensors { .. }));
    // Random garbage.
    let mut rng = SplitMix64::new(5);
    let garbage: Vec<u8> = (0..4096).map(|_| rng.next_u64() as u8).collect();
    assert!(EngineModel::from_safetensors_bytes(&garbage).is_err());
    // Random byte flips anywhere (header or data) must never panic.
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    for i in 0..300 {
        let mut b = bytes.clone();
        let pos = if i % 2 == 0 {
            8 + rng.below(header_len as u64) as usize
        } else {
            rng.below(bytes.len() as u64) as usize
        };
        b[pos] ^= 1 << rng.below(8);
        let _ = EngineModel::from_safetensors_bytes(&b);
    }
}

#[test]
fn missing_tensor_is_named() {
    let bytes = small_model().to_safetensors_bytes().unwrap();
    let b = rewrite(&bytes, |t, _| {
        t.remove("layers.1.attn.k.bias");
    });
    let e = load_err(&b);
    assert!(
        matches!(&e, ModelFileError::MissingTensor { name, .. } if name == "layers.1.attn.k.bias"),
        "{e}"
    );
    assert!(e.to_string().contains("layers.1.attn.k.bias") && e.to_string().contains("[64]"));
}

#[test]
fn wrong_shape_is_named() {
    let bytes = small_model().to_safetensors_bytes().unwrap();
    let b = rewrite(&bytes, |t, _| {
        let w = t.get_mut("layers.0.ffn.fc1.weight").unwrap();
        w.shape = vec![128, 63];
        w.data.truncate(128 * 63 * 4);
    });
    let e = load_err(&b);
    match &e {
        ModelFileError::WrongShape {
            name,
            expected,
            found,
        } => {
            assert_eq!(name, "layers.0.ffn.fc1.weight");
            assert_eq!(expected, &vec![128, 64]);
            assert_eq!(found, &vec![128, 63]);
        }
        other => panic!("expected WrongShape, got {other}"),
    }
    assert!(e.to_string().contains("layers.0.ffn.fc1.weight"));
}

#[test]
fn wrong_dtype_unexpected_tensor_and_nan_are_named() {
    let bytes = small_model().to_safetensors_bytes().unwrap();
    let b = rewrite(&bytes, |t, _| {
        let w = t.get_mut("final_norm.gamma").unwrap();
        w.dtype = Dtype::I32;
    });
    assert!(
        matches!(load_err(&b), ModelFileError::WrongDtype { name, .. } if name == "final_norm.gamma")
    );

    let b = rewrite(&bytes, |t, _| {
        t.insert(
            "extra.weight".into(),
            T {
                dtype: Dtype::F32,
                shape: vec![1],
                data: vec![0; 4],
            },
        );
    });
    assert!(
        matches!(load_err(&b), ModelFileError::UnexpectedTensor { name, .. } if name == "extra.weight")
    );

    let b = rewrite(&bytes, |t, _| {
        let w = t.get_mut("head.bias").unwrap();
        w.data[8..12].copy_from_slice(&f32::NAN.to_le_bytes());
    });
    assert!(
        matches!(load_err(&b), ModelFileError::NonFinite { name, index: 2 } if name == "head.bias")
    );
}

#[test]
fn quantization_flag_must_match_tensors() {
    let bytes = small_model()
        .quantize_int8()
        .to_safetensors_bytes()
        .unwrap();
    let b = rewrite_meta(&bytes, |v| v["quantization"] = "none".into());
    let e = load_err(&b);
    assert!(
        matches!(&e, ModelFileError::MissingTensor { name, .. } if name == "gene_embedding.weight"),
        "{e}"
    );
    assert!(
        e.to_string().contains("gene_embedding.weight_q") && e.to_string().contains("quantization")
    );
}

#[test]
fn metadata_problems_are_typed() {
    let bytes = small_model().to_safetensors_bytes().unwrap();
    let b = rewrite(&bytes, |_, meta| *meta = None);
    assert!(matches!(load_err(&b), ModelFileError::MissingMetadata));
    let b = rewrite(&bytes, |_, meta| *meta = Some("{not json".into()));
    assert!(matches!(
        load_err(&b),
        ModelFileError::InvalidMetadata { .. }
    ));
    let b = rewrite_meta(&bytes, |v| v["format_version"] = 3.into());
    assert!(matches!(
        load_err(&b),
        ModelFileError::UnsupportedVersion {
            found: 3,
            supported: 2
        }
    ));
    let b = rewrite_meta(&bytes, |v| v["architecture"] = "multimodal".into());
    assert!(matches!(
        load_err(&b),
        ModelFileError::UnsupportedArchitecture { .. }
    ));
    let b = rewrite_meta(&bytes, |v| v["quantization"] = "int4".into());
    assert!(matches!(
        load_err(&b),
        ModelFileError::InvalidMetadata { .. }
    ));
    let b = rewrite_meta(&bytes, |v| {
        v["genes"].as_array_mut().unwrap().pop();
    });
    assert!(matches!(load_err(&b), ModelFileError::InvalidConfig { .. }));
    let b = rewrite_meta(&bytes, |v| v["config"]["n_heads"] = 3.into());
    assert!(matches!(load_err(&b), ModelFileError::InvalidConfig { .. }));
    let b = rewrite_meta(&bytes, |v| v["normalisation"]["kind"] = "log1p_cp1m".into());
    assert!(matches!(
        load_err(&b),
        ModelFileError::InvalidNormalisation { field, value, .. }
            if field == "normalisation.kind" && value.contains("log1p_cp1m")
    ));
    let b = rewrite_meta(&bytes, |v| {
        v["config"].as_object_mut().unwrap().remove("d_ff");
    });
    assert!(matches!(
        load_err(&b),
        ModelFileError::InvalidMetadata { .. }
    ));
    // More layers in the config than tensors in the file: the first missing one is named.
    let b = rewrite_meta(&bytes, |v| v["config"]["n_layers"] = 3.into());
    assert!(
        matches!(load_err(&b), ModelFileError::MissingTensor { name, .. } if name == "layers.2.norm1.gamma")
    );
}

#[test]
fn in_memory_inconsistencies_are_rejected_on_save() {
    let mut m = small_model();
    m.weights.layers[1].fc1.bias.pop();
    let e = m.to_safetensors_bytes().unwrap_err();
    assert!(
        matches!(&e, ModelFileError::WrongShape { name, .. } if name == "layers.1.ffn.fc1.bias"),
        "{e}"
    );
    let mut m = small_model();
    m.meta.quantization = Quantization::Int8PerChannelSymmetric;
    assert!(matches!(
        m.to_safetensors_bytes().unwrap_err(),
        ModelFileError::WrongDtype { .. }
    ));
}

#[cfg(not(target_arch = "wasm32"))]
#[test]
fn save_atomic_and_load_roundtrip_with_path_errors() {
    let dir = common::scratch("format-test");
    let path = dir.join("model.safetensors");
    let m = small_model().quantize_int8();
    m.save_atomic(&path).unwrap();
    m.save_atomic(&path).unwrap(); // overwriting works
    assert_eq!(EngineModel::load(&path).unwrap(), m);
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        leftovers.len(),
        1,
        "temporary files left behind: {leftovers:?}"
    );

    let missing = dir.join("nope.safetensors");
    let e = EngineModel::load(&missing).unwrap_err();
    assert!(
        matches!(e, ModelFileError::Io { .. }) && e.to_string().contains("nope.safetensors"),
        "{e}"
    );

    let bad = dir.join("bad.safetensors");
    std::fs::write(&bad, b"definitely not safetensors").unwrap();
    let e = EngineModel::load(&bad).unwrap_err();
    eprintln!("-> {e}");
    assert!(
        matches!(e, ModelFileError::InFile { .. }) && e.to_string().contains("bad.safetensors"),
        "{e}"
    );
}

fn meta_with_genes(genes: &[&str]) -> ModelMeta {
    let g: Vec<String> = genes.iter().map(|s| s.to_string()).collect();
    ModelMeta::new(
        ClassifierConfig::new(g.len(), 2),
        g,
        vec!["a".into(), "b".into()],
    )
}

#[test]
fn align_reorders_and_ignores_extra_genes() {
    let meta = meta_with_genes(&["CD3E", "MS4A1", "EPCAM"]);
    let input: Vec<String> = ["EXTRA", "EPCAM", "CD3E", "MS4A1"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    // Two cells.
    let counts = [9.0, 1.0, 2.0, 3.0, 8.0, 4.0, 5.0, 6.0];
    let aligned = align_to_panel(&meta, &input, &counts).unwrap();
    assert_eq!(aligned, vec![2.0, 3.0, 1.0, 5.0, 6.0, 4.0]);
}

#[test]
fn gene_panel_mismatch_names_missing_genes() {
    let genes = names("GENE", 40);
    let meta = ModelMeta::new(
        ClassifierConfig::new(40, 2),
        genes.clone(),
        vec!["a".into(), "b".into()],
    );
    // Drop GENE3 and GENE17.
    let input: Vec<String> = genes
        .iter()
        .filter(|g| *g != "GENE3" && *g != "GENE17")
        .cloned()
        .collect();
    let counts = vec![1.0; input.len() * 2];
    let e = align_to_panel(&meta, &input, &counts).unwrap_err();
    eprintln!("-> {e}");
    match &e {
        ModelFileError::GenePanelMismatch {
            missing,
            n_missing,
            n_model_genes,
        } => {
            assert_eq!(missing, &vec!["GENE3".to_string(), "GENE17".to_string()]);
            assert_eq!((*n_missing, *n_model_genes), (2, 40));
        }
        other => panic!("expected GenePanelMismatch, got {other}"),
    }
    assert!(e.to_string().contains("GENE3") && e.to_string().contains("GENE17"));

    // Many missing: the first 20 are listed, the count is complete.
    let input: Vec<String> = genes[..5].to_vec();
    let e = align_to_panel(&meta, &input, &[1.0; 5]).unwrap_err();
    match &e {
        ModelFileError::GenePanelMismatch {
            missing, n_missing, ..
        } => {
            assert_eq!(missing.len(), 20);
            assert_eq!(missing[0], "GENE5");
            assert_eq!(*n_missing, 35);
        }
        other => panic!("expected GenePanelMismatch, got {other}"),
    }
    assert!(e.to_string().contains("35 of the model's 40"));
}

#[test]
fn align_validates_counts() {
    let meta = meta_with_genes(&["A", "B"]);
    let input = vec!["B".to_string(), "A".to_string()];
    assert!(matches!(
        align_to_panel(&meta, &input, &[1.0, 2.0, 3.0]),
        Err(ModelFileError::CountsShape {
            found: 3,
            n_genes: 2
        })
    ));
    // Input columns are [B, A].
    let e = align_to_panel(&meta, &input, &[1.0, 2.0, 3.0, -1.0]).unwrap_err();
    assert!(
        matches!(&e, ModelFileError::InvalidCount { cell: 1, gene, .. } if gene == "A"),
        "{e}"
    );
    let e = align_to_panel(&meta, &input, &[f32::NAN, 2.0, 3.0, 4.0]).unwrap_err();
    assert!(
        matches!(&e, ModelFileError::InvalidCount { cell: 0, gene, .. } if gene == "B"),
        "{e}"
    );
    let e = align_to_panel(&meta, &input, &[1.0, 2.0, f32::INFINITY, 4.0]).unwrap_err();
    assert!(
        matches!(&e, ModelFileError::InvalidCount { cell: 1, gene, .. } if gene == "B"),
        "{e}"
    );
    let dup = vec!["A".to_string(), "B".to_string(), "A".to_string()];
    assert!(matches!(
        align_to_panel(&meta, &dup, &[1.0; 3]),
        Err(ModelFileError::DuplicateInputGene {
            first: 0,
            second: 2,
            ..
        })
    ));
    // Zero cells is fine.
    assert!(align_to_panel(&meta, &input, &[]).unwrap().is_empty());
}

#[test]
fn normalise_log1p_cp10k_values() {
    let counts = [
        1.0, 0.0, 3.0, /* empty cell */ 0.0, 0.0, 0.0, /* total < 1 */ 0.5, 0.0, 0.0,
    ];
    let x = normalise_log1p_cp10k(&counts, 3, 1e4);
    let expect = [
        (1.0f32 + 2500.0).ln(),
        0.0,
        (1.0f32 + 7500.0).ln(),
        0.0,
        0.0,
        0.0,
        (1.0f32 + 5000.0).ln(),
        0.0,
        0.0,
    ];
    for (a, b) in x.iter().zip(expect) {
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
    }
    assert!(normalise_log1p_cp10k(&[], 3, 1e4).is_empty());
}

#[test]
fn prepare_counts_aligns_then_normalises() {
    let m = small_model();
    let mut genes = m.meta.genes.clone();
    genes.reverse();
    genes.push("NOT_IN_MODEL".into());
    let cells = 3;
    let counts = SplitMix64::new(8).counts(cells, genes.len(), 0.5, 20);
    let x = m.prepare_counts(&genes, &counts).unwrap();
    let aligned = align_to_panel(&m.meta, &genes, &counts).unwrap();
    assert_eq!(x, normalise_log1p_cp10k(&aligned, 37, 1e4));
    assert_eq!(x.len(), cells * 37);
    // Column 0 of the model is the input's second-to-last column.
    assert_eq!(aligned[0], counts[genes.len() - 2]);
}

/// A small random multi-input model (morphology ViT, centroid token, attention bias).
fn multi_model() -> EngineModel {
    use cellsymphony::engine::{MorphologyTokenConfig, SpatialTokenConfig};
    let config = ClassifierConfig {
        n_layers: 1,
        d_model: 16,
        d_ff: 24,
        gene_tokens: 2,
        spatial: Some(SpatialTokenConfig { n_frequencies: 3, min_wavelength_um: 8.0, max_wavelength_um: 800.0 }),
        morphology: Some(MorphologyTokenConfig {
            image_size: 16,
            vit_patch: 4,
            width: 8,
            n_heads: 2,
            d_ff: 12,
            n_layers: 1,
            k_nearest: 4,
            um_per_px: 0.75,
        }),
        attention_bias: true,
        ..ClassifierConfig::new(37, 5)
    };
    random_model(config, 3)
}

#[test]
fn multimodal_files_roundtrip_and_name_their_tensors() {
    let m = multi_model();
    assert_eq!(m.meta.architecture, "multi_input");
    let c = m.config();
    assert_eq!((c.n_tokens(), c.n_inputs(), c.n_embedding_inputs()), (4, 37 + 12, 37 + 12 + 8));
    let names: Vec<String> = expected_tensors(c, Quantization::None).into_iter().map(|t| t.name).collect();
    for want in ["attention_bias", "morphology.patch_embedding.weight", "morphology.layers.0.attn.q.weight", "morphology.norm.gamma"] {
        assert!(names.iter().any(|n| n == want), "{want} not in {names:?}");
    }
    for q in [m.clone(), m.quantize_int8()] {
        let bytes = q.to_safetensors_bytes().unwrap();
        assert_eq!(EngineModel::from_safetensors_bytes(&bytes).unwrap(), q);
        // Every tensor the config implies is in the file, and nothing else.
        let st = SafeTensors::deserialize(&bytes).unwrap();
        assert_eq!(st.names().len(), expected_tensors(q.config(), q.meta.quantization).len());
    }
    let bytes = m.to_safetensors_bytes().unwrap();
    // A missing ViT tensor is named.
    let e = load_err(&rewrite(&bytes, |t, _| {
        t.remove("morphology.norm.gamma");
    }));
    assert!(e.to_string().contains("morphology.norm.gamma"), "{e}");
    // A bias of the wrong shape is named.
    let e = load_err(&rewrite(&bytes, |t, _| {
        let b = t.get_mut("attention_bias").unwrap();
        b.shape = vec![4, 16];
    }));
    assert!(e.to_string().contains("attention_bias"), "{e}");
    // Metadata claiming another architecture, or an unsupported combination, is rejected.
    let e = load_err(&rewrite_meta(&bytes, |j| j["architecture"] = "dual_modality".into()));
    assert!(e.to_string().contains("multi_input"), "{e}");
    let e = load_err(&rewrite_meta(&bytes, |j| j["config"]["attention_bias"] = false.into()));
    assert!(e.to_string().contains("attention_bias"), "{e}");
    let e = load_err(&rewrite_meta(&bytes, |j| j["config"]["morphology"]["vit_patch"] = 5.into()));
    assert!(e.to_string().contains("vit_patch"), "{e}");
    // Patches: missing, wrong length and NaN are typed errors naming what the model reads.
    let c = m.config();
    let e = cellsymphony::engine::check_patches(c, None, 2).unwrap_err().to_string();
    assert!(e.contains("16×16") && e.contains("0.75"), "{e}");
    let e = cellsymphony::engine::check_patches(c, Some(&[0.5; 100]), 2).unwrap_err().to_string();
    assert!(e.contains("100 values"), "{e}");
    let mut p = vec![0.5f32; 2 * 256];
    p[300] = f32::NAN;
    let e = cellsymphony::engine::check_patches(c, Some(&p), 2).unwrap_err().to_string();
    assert!(e.contains("pixel 44 of cell 1"), "{e}");
}

/// The host unfold puts ViT patch (r, q)'s pixels row-major, then a one-hot position.
#[test]
fn vit_patch_rows_unfold_in_burn_order() {
    use cellsymphony::engine::{vit_patch_rows, MorphologyTokenConfig};
    let m = MorphologyTokenConfig { image_size: 6, vit_patch: 3, width: 4, n_heads: 1, d_ff: 4, n_layers: 1, k_nearest: 1, um_per_px: 1.0 };
    let img: Vec<f32> = (0..2 * 36).map(|v| v as f32).collect();
    let rows = vit_patch_rows(&img, 2, &m);
    assert_eq!(rows.len(), 2 * 4 * (9 + 4));
    // Cell 1, token 3 = (r 1, q 1): pixels (3..6) × (3..6) of image 1, then one-hot position 3.
    let row = &rows[(4 + 3) * 13..(4 + 4) * 13];
    assert_eq!(&row[..9], &[57.0, 58.0, 59.0, 63.0, 64.0, 65.0, 69.0, 70.0, 71.0]);
    assert_eq!(&row[9..], &[0.0, 0.0, 0.0, 1.0]);
}

/// Issue 13, point 4: a plausible corrupt model must not load. One flipped bit anywhere in the
/// tensors breaks the content checksum; a file without a checksum (written before it existed)
/// still cannot smuggle in an implausible value such as a scale of 3.4e35.
#[test]
fn a_flipped_bit_or_an_implausible_value_is_refused_at_load() {
    let model = random_model(cellsymphony::engine::ClassifierConfig::new(6, 3), 5).quantize_int8();
    let bytes = model.to_safetensors_bytes().unwrap();
    assert!(EngineModel::from_safetensors_bytes(&bytes).is_ok());
    // Flip the lowest bit of the last byte (tensor data sits at the end of the file).
    let mut flipped = bytes.clone();
    *flipped.last_mut().unwrap() ^= 1;
    let err = EngineModel::from_safetensors_bytes(&flipped).unwrap_err();
    assert!(matches!(err, ModelFileError::ChecksumMismatch { .. }), "{err}");
    assert!(err.to_string().contains("checksum"), "{err}");

    // Re-serialise without the checksum, with head.weight_scale[0] = 3.4e35.
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
    let mut metadata: HashMap<String, String> = header.metadata().clone().unwrap();
    assert!(metadata.remove("cellsymphony_crc32").is_some(), "export writes the checksum");
    let mut owned: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(n, t)| (n, t.dtype(), t.shape().to_vec(), t.data().to_vec()))
        .collect();
    let views = |owned: &Vec<(String, Dtype, Vec<usize>, Vec<u8>)>| -> Vec<u8> {
        let v: Vec<(String, safetensors::tensor::TensorView<'_>)> = owned
            .iter()
            .map(|(n, d, s, b)| (n.clone(), safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap()))
            .collect();
        safetensors::serialize(v, Some(metadata.clone())).unwrap()
    };
    // Without a checksum the file still loads (older exports).
    assert!(EngineModel::from_safetensors_bytes(&views(&owned)).is_ok());
    let scale = owned.iter_mut().find(|(n, ..)| n == "head.weight_scale").unwrap();
    scale.3[..4].copy_from_slice(&3.4e35f32.to_le_bytes());
    let err = EngineModel::from_safetensors_bytes(&views(&owned)).unwrap_err();
    assert!(matches!(err, ModelFileError::ImplausibleValue { ref name, .. } if name == "head.weight_scale"), "{err}");
}

/// Protein channels (`meta.proteins`): fitted on the training cells only, aligned by marker
/// name, typed errors naming what is missing or bad.
#[test]
fn protein_channels_fit_on_training_cells_and_align_by_marker_name() {
    use cellsymphony::data::ProteinInput;
    use cellsymphony::engine::{ProteinChannels, MIN_PROTEIN_STD};
    let strings = |v: &[&str]| -> Vec<String> { v.iter().map(|x| x.to_string()).collect() };
    // 3 cells × 2 markers; fit on cells 0 and 2 only.
    let values = [0.0, 5.0, 100.0, 7.0, 10.0, 5.0];
    let pc = ProteinChannels::fit(strings(&["CD45", "PanCK"]), &values, &[0, 2], 5.0);
    let a0 = 0f32.asinh();
    let a2 = 2f32.asinh();
    assert!((pc.mean[0] - (a0 + a2) / 2.0).abs() < 1e-6);
    assert_eq!(pc.std[1], MIN_PROTEIN_STD, "a constant marker gets the floor");
    pc.validate().unwrap();
    let x = pc.apply(&values);
    assert!((x[0] + 1.0).abs() < 1e-5 && (x[4] - 1.0).abs() < 1e-5, "{x:?}");

    // Input in another order with an extra marker.
    let markers = strings(&["X", "PanCK", "CD45"]);
    let input = [9.0, 5.0, 0.0, 9.0, 7.0, 100.0];
    let got = pc.align(Some(&ProteinInput { values: &input, markers: &markers }), 2).unwrap();
    assert_eq!(got, vec![0.0, 5.0, 100.0, 7.0]);
    let e = pc.align(Some(&ProteinInput { values: &input[..4], markers: &markers[..2] }), 2).unwrap_err();
    assert!(e.to_string().contains("CD45") && e.to_string().contains("--protein"), "{e}");
    let e = pc.align(None, 2).unwrap_err();
    assert!(matches!(&e, ModelFileError::ProteinPanelMismatch { n_missing: 2, .. }), "{e}");
    let nan = [9.0, f32::NAN, 0.0, 9.0, 7.0, 100.0];
    let e = pc.align(Some(&ProteinInput { values: &nan, markers: &markers }), 2).unwrap_err();
    assert!(e.to_string().contains("cell 0"), "{e}");
    assert_eq!(ProteinChannels::append(&[1.0, 2.0, 3.0, 4.0], 2, &[9.0, 8.0], 1), vec![1.0, 2.0, 9.0, 3.0, 4.0, 8.0]);
}
