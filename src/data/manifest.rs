//! `experiment.xenium`: the JSON manifest at the root of a Xenium output bundle.
//!
//! Known fields are lifted into [`XeniumManifest`]; every field (known or not) stays in
//! [`XeniumManifest::raw`], so fields added by later Xenium versions are not lost.

use std::path::Path;

use serde_json::Value;

use super::error::DataError;

/// File name of the manifest inside a Xenium output bundle.
pub const MANIFEST_FILE: &str = "experiment.xenium";

/// Parsed `experiment.xenium`. Every known field is optional: older and newer Xenium
/// Onboard Analysis versions name or omit fields differently.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct XeniumManifest {
    /// `xenium_version` (manifest / instrument format version), as text.
    pub xenium_version: Option<String>,
    /// `analysis_sw_version` (Xenium Onboard Analysis version), as text.
    pub analysis_sw_version: Option<String>,
    /// `pixel_size`: µm per pixel of the morphology image (finite, > 0).
    pub pixel_size: Option<f64>,
    /// `run_name`.
    pub run_name: Option<String>,
    /// `panel_name`.
    pub panel_name: Option<String>,
    /// `num_cells`.
    pub num_cells: Option<u64>,
    /// Transcript file names found in the manifest: string values of top-level keys, and of
    /// keys of `xenium_explorer_files`, that contain `transcripts` (e.g. `transcripts.zarr.zip`).
    pub transcripts_files: Vec<String>,
    /// The whole JSON object, unknown fields included.
    pub raw: Value,
}

impl XeniumManifest {
    /// The Xenium Onboard Analysis release of `analysis_sw_version` (e.g. `xenium-2.0.0.6-35-g…`
    /// → `[2, 0, 0]`, `4.0` → `[4, 0, 0]`); `None` for text that names no release, such as the
    /// `"R&D"` of some public bundles. Readers never depend on it: they recognise each layout
    /// by what the files hold, so a bundle with an unparsable version reads like the latest.
    pub fn analysis_version(&self) -> Option<[u32; 3]> {
        let text = self.analysis_sw_version.as_deref()?.trim();
        let text = text.strip_prefix("xenium-").or_else(|| text.strip_prefix("Xenium-")).unwrap_or(text);
        let mut parts = text.split(|c: char| !c.is_ascii_digit());
        let major: u32 = parts.next()?.parse().ok()?;
        let minor = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        let patch = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        Some([major, minor, patch])
    }
}

/// Text of a string or number field (versions appear as both).
fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Parses manifest JSON text; `path` is only used in error messages.
///
/// Fails with [`DataError::Json`] (line, column) when the text is not a JSON object and
/// [`DataError::ManifestField`] when a known field has the wrong kind of value.
pub fn parse_manifest(json: &str, path: &Path) -> Result<XeniumManifest, DataError> {
    let raw: Value = serde_json::from_str(json).map_err(|e| DataError::Json {
        path: path.to_path_buf(),
        line: e.line() as u64,
        column: e.column() as u64,
        message: e.to_string(),
    })?;
    let Value::Object(obj) = &raw else {
        return Err(DataError::Json {
            path: path.to_path_buf(),
            line: 0,
            column: 0,
            message: "the top level is not a JSON object".to_string(),
        });
    };
    let bad = |field: &str, v: &Value, expected: &'static str| DataError::ManifestField {
        path: path.to_path_buf(),
        field: field.to_string(),
        value: v.to_string(),
        expected,
    };
    let string_field = |field: &str| -> Result<Option<String>, DataError> {
        match obj.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => text(v)
                .map(Some)
                .ok_or_else(|| bad(field, v, "a string or number")),
        }
    };
    let pixel_size = match obj.get("pixel_size") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_f64()
                .filter(|p| p.is_finite() && *p > 0.0)
                .ok_or_else(|| bad("pixel_size", v, "a positive number of µm per pixel"))?,
        ),
    };
    let num_cells = match obj.get("num_cells") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .ok_or_else(|| bad("num_cells", v, "a non-negative integer"))?,
        ),
    };
    let mut transcripts_files = Vec::new();
    let mut collect = |map: &serde_json::Map<String, Value>| {
        for (k, v) in map {
            if let (true, Value::String(s)) = (k.contains("transcripts"), v) {
                transcripts_files.push(s.clone());
            }
        }
    };
    collect(obj);
    if let Some(Value::Object(files)) = obj.get("xenium_explorer_files") {
        collect(files);
    }
    Ok(XeniumManifest {
        xenium_version: string_field("xenium_version")?,
        analysis_sw_version: string_field("analysis_sw_version")?,
        pixel_size,
        run_name: string_field("run_name")?,
        panel_name: string_field("panel_name")?,
        num_cells,
        transcripts_files,
        raw,
    })
}

/// Reads and parses a manifest file (see [`parse_manifest`]).
#[cfg(feature = "native-io")]
pub fn read_manifest(path: &Path) -> Result<XeniumManifest, DataError> {
    let json = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
    parse_manifest(&json, path)
}

/// Reads `dir/experiment.xenium` when it exists: `Ok(None)` when the bundle has no manifest
/// (not an error), an error when it exists but cannot be read or parsed.
#[cfg(feature = "native-io")]
pub fn read_manifest_in(dir: &Path) -> Result<Option<XeniumManifest>, DataError> {
    let path = dir.join(MANIFEST_FILE);
    if !path.exists() {
        return Ok(None);
    }
    read_manifest(&path).map(Some)
}
