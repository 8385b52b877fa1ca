//! Predictions as Xenium Explorer cell groups: the CSV Explorer imports under
//! "Cell > Groups > Upload" (a header `cell_id,group`, then one row per cell; the cell ids
//! as the Xenium bundle writes them, e.g. `aaabbbcc-1`, or the integer ids of XOA < 1.3).
//!
//! Explorer takes one group per cell and file and names the grouping after the file, so the
//! confidence-thresholded grouping goes to a second file beside the first:
//!
//! - `<path>`: one group per predicted class (cells without a class keep their label, e.g.
//!   `unclassified: no counts`);
//! - `<stem>_confident.<ext>`: the predicted class for cells with confidence ≥ `min_confidence`,
//!   the group `low confidence (< t)` for the others.
//!
//! Both files are written atomically (temporary file, then rename).

use std::path::{Path, PathBuf};

use super::error::DataError;
use super::predictions::Predictions;

/// Header of Xenium Explorer's cell-groups CSV.
pub const XENIUM_EXPLORER_HEADER: [&str; 2] = ["cell_id", "group"];

/// Default `min_confidence` of [`write_xenium_explorer_groups`] (and the CLI flag).
pub const XENIUM_EXPLORER_MIN_CONFIDENCE: f32 = 0.5;

/// Group name of cells below the confidence threshold `t` (`"low confidence (< 0.5)"`).
pub fn low_confidence_group(t: f32) -> String {
    format!("low confidence (< {t})")
}

/// Path of the confidence-thresholded grouping beside `path`: `groups.csv` →
/// `groups_confident.csv`.
pub fn confident_groups_path(path: &Path) -> PathBuf {
    let stem = path
        .file_stem()
        .map_or_else(|| "groups".into(), |s| s.to_string_lossy().into_owned());
    let name = match path.extension() {
        Some(ext) => format!("{stem}_confident.{}", ext.to_string_lossy()),
        None => format!("{stem}_confident"),
    };
    path.with_file_name(name)
}

/// One `cell_id,group` CSV in memory (quoted as CSV requires).
fn groups_csv<'a>(
    path: &Path,
    rows: impl Iterator<Item = (&'a str, &'a str)>,
) -> Result<Vec<u8>, DataError> {
    let csv_err = |e: csv::Error| DataError::io(path, std::io::Error::other(e.to_string()));
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(XENIUM_EXPLORER_HEADER).map_err(csv_err)?;
    for (id, group) in rows {
        w.write_record([id, group]).map_err(csv_err)?;
    }
    w.into_inner()
        .map_err(|e| DataError::io(path, std::io::Error::other(e.to_string())))
}

/// Writes `p` as two Xenium Explorer cell-group CSVs (see the module docs): `path` (group =
/// predicted class) and [`confident_groups_path`]`(path)` (class if confidence ≥
/// `min_confidence`, else [`low_confidence_group`]). Returns the two paths written.
///
/// Errors: [`DataError::Shape`] when the vectors of `p` differ in length,
/// [`DataError::InvalidArgument`] for a `min_confidence` outside `(0, 1]` or an empty cell id
/// (Explorer cannot match it), [`DataError::Io`] when a file cannot be written.
pub fn write_xenium_explorer_groups(
    path: &Path,
    p: &Predictions,
    min_confidence: f32,
) -> Result<[PathBuf; 2], DataError> {
    p.check()?;
    if !(min_confidence > 0.0 && min_confidence <= 1.0) {
        return Err(DataError::InvalidArgument {
            name: "xenium-explorer-min-confidence",
            value: min_confidence.to_string(),
            expected: "a confidence in (0, 1], e.g. 0.5",
        });
    }
    if let Some(i) = p.cell_ids.iter().position(String::is_empty) {
        return Err(DataError::InvalidArgument {
            name: "cell_ids",
            value: format!("an empty id at row {i}"),
            expected: "the bundle's cell ids (Xenium Explorer matches groups by cell_id)",
        });
    }
    let ids = p.cell_ids.iter().map(String::as_str);
    let by_class = groups_csv(path, ids.clone().zip(p.predicted.iter().map(String::as_str)))?;
    let low = low_confidence_group(min_confidence);
    let confident = p
        .predicted
        .iter()
        .zip(&p.confidence)
        .map(|(class, &c)| if c >= min_confidence { class.as_str() } else { low.as_str() });
    let second = confident_groups_path(path);
    let thresholded = groups_csv(&second, ids.zip(confident))?;
    super::predictions::write_atomic(path, &by_class)?;
    super::predictions::write_atomic(&second, &thresholded)?;
    Ok([path.to_path_buf(), second])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn preds() -> Predictions {
        Predictions {
            cell_ids: vec!["aaab-1".into(), "aaac-1".into(), "aaad-1".into()],
            predicted: vec!["B, naive".into(), "T".into(), "T".into()],
            confidence: vec![0.9, 0.4, 0.5],
            centroids_um: None,
        }
    }

    #[test]
    fn writes_class_and_confidence_groupings() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("groups.csv");
        let [a, b] = write_xenium_explorer_groups(&path, &preds(), 0.5).unwrap();
        assert_eq!(b, dir.path().join("groups_confident.csv"));
        let a = std::fs::read_to_string(a).unwrap();
        assert_eq!(a, "cell_id,group\naaab-1,\"B, naive\"\naaac-1,T\naaad-1,T\n");
        let b = std::fs::read_to_string(b).unwrap();
        assert_eq!(
            b,
            "cell_id,group\naaab-1,\"B, naive\"\naaac-1,low confidence (< 0.5)\naaad-1,T\n"
        );
    }

    #[test]
    fn refuses_bad_threshold_and_empty_ids() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.csv");
        for t in [0.0, 1.5, f32::NAN] {
            let e = write_xenium_explorer_groups(&path, &preds(), t).unwrap_err();
            assert!(e.to_string().contains("xenium-explorer-min-confidence"), "{e}");
        }
        let mut p = preds();
        p.cell_ids[1].clear();
        let e = write_xenium_explorer_groups(&path, &p, 0.5).unwrap_err();
        assert!(e.to_string().contains("row 1"), "{e}");
        assert!(!path.exists());
    }
}
