//! AnnData `.h5ad` files (scanpy / anndata), read with the pure-Rust HDF5 layer.
//!
//! Read: `obs_names`, `var_names`, `X` (dense `[n_obs, n_vars]` dataset, or a CSR / CSC group
//! marked by `encoding-type` = `csr_matrix` / `csc_matrix` or the pre-0.7 `h5sparse_format`
//! attribute; stored as float32, float64 or any integer), the `obs` and `var` columns
//! (numeric, string, boolean, categorical) and the dense `obsm` matrices (`spatial`,
//! `X_umap`, ...). Three dataframe layouts are understood:
//!
//! * anndata ≥ 0.8: a group per dataframe, categoricals as groups with
//!   `encoding-type=categorical`, `codes` and `categories`;
//! * anndata 0.7: categorical codes as a dataset with a `categories` attribute and the
//!   categories in `<dataframe>/__categories/<column>`;
//! * anndata < 0.7 (e.g. scanpy's `pbmc68k_reduced.h5ad`): a compound dataset per dataframe
//!   with an `index` field, categorical codes as integer fields and the categories in
//!   `uns/<column>_categories`; `obsm` as a compound dataset of array fields.
//!
//! Columns of other encodings (nullable strings, nested dataframes, ...) are not read; their
//! names are listed in [`AnnData::skipped`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hdf5_pure::DType;

use super::error::DataError;
use super::h5_10x::check_compressed;
use super::xenium::canonical_axes;
use super::hdf5::{child, Field, Kind, H5};
use super::xenium::{is_control_feature, CellTable};

/// The `X` matrix of an AnnData file, shape `[n_obs, n_vars]`, values as `f32`.
#[derive(Debug, Clone, PartialEq)]
pub enum XMatrix {
    /// Dense row-major `[n_obs, n_vars]`.
    Dense(Vec<f32>),
    /// Compressed sparse rows: row `i` holds `data[indptr[i]..indptr[i+1]]` at columns
    /// `indices[..]`. `indptr` has `n_obs + 1` entries; indices are checked `< n_vars`.
    Csr {
        /// Row offsets, `n_obs + 1` entries, non-decreasing from 0 to `nnz`.
        indptr: Vec<usize>,
        /// Column of each stored value, `nnz` entries.
        indices: Vec<usize>,
        /// Stored values, `nnz` entries.
        data: Vec<f32>,
    },
    /// Compressed sparse columns: column `j` holds `data[indptr[j]..indptr[j+1]]` at rows
    /// `indices[..]`. `indptr` has `n_vars + 1` entries; indices are checked `< n_obs`.
    Csc {
        /// Column offsets, `n_vars + 1` entries, non-decreasing from 0 to `nnz`.
        indptr: Vec<usize>,
        /// Row of each stored value, `nnz` entries.
        indices: Vec<usize>,
        /// Stored values, `nnz` entries.
        data: Vec<f32>,
    },
}

/// A categorical column: a code per row into `categories`.
#[derive(Debug, Clone, PartialEq)]
pub struct Categorical {
    /// Category of each row (`None` for a missing value, code -1 in the file).
    pub codes: Vec<Option<u32>>,
    /// Category names (numeric categories are formatted as text).
    pub categories: Vec<String>,
    /// Whether the categories are ordered.
    pub ordered: bool,
}

impl Categorical {
    /// Category name of row `i`, `None` when missing or out of range.
    pub fn label(&self, i: usize) -> Option<&str> {
        let code = (*self.codes.get(i)?)?;
        self.categories.get(code as usize).map(String::as_str)
    }

    /// Number of rows in each category, `[categories]`.
    pub fn counts(&self) -> Vec<usize> {
        let mut n = vec![0usize; self.categories.len()];
        for c in self.codes.iter().flatten() {
            if let Some(slot) = n.get_mut(*c as usize) {
                *slot += 1;
            }
        }
        n
    }
}

/// Values of one `obs` or `var` column, one per row.
#[derive(Debug, Clone, PartialEq)]
pub enum ColumnValues {
    /// Integers and floats (nullable integers: NaN where masked).
    Numeric(Vec<f64>),
    /// Strings.
    Text(Vec<String>),
    /// Booleans.
    Bool(Vec<bool>),
    /// Categorical values.
    Categorical(Categorical),
}

/// One named column of `obs` or `var`.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    /// Column name.
    pub name: String,
    /// Values, one per row.
    pub values: ColumnValues,
}

/// A dense `obsm` matrix, row-major `[n_obs, n_cols]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Embedding {
    /// Number of columns.
    pub n_cols: usize,
    /// Values, `n_obs * n_cols`.
    pub values: Vec<f32>,
}

/// The parts of an `.h5ad` file the pipeline uses.
#[derive(Debug, Clone, PartialEq)]
pub struct AnnData {
    /// File read (named in errors).
    pub path: PathBuf,
    /// Row (cell) names, `n_obs`.
    pub obs_names: Vec<String>,
    /// Column (gene) names, `n_vars`.
    pub var_names: Vec<String>,
    /// `X`, `[n_obs, n_vars]`; `None` when the file has no `X`.
    pub x: Option<XMatrix>,
    /// `obs` columns in file order (`column-order`).
    pub obs: Vec<Column>,
    /// `var` columns in file order.
    pub var: Vec<Column>,
    /// Dense numeric `obsm` entries by key (e.g. `spatial`, `X_pca`).
    pub obsm: BTreeMap<String, Embedding>,
    /// Columns and `obsm` entries not read (unsupported encoding), as `obs/<name>` etc.
    pub skipped: Vec<String>,
}

impl AnnData {
    /// Number of rows (cells).
    pub fn n_obs(&self) -> usize {
        self.obs_names.len()
    }

    /// Number of columns (genes).
    pub fn n_vars(&self) -> usize {
        self.var_names.len()
    }

    /// The `obs` column named `name`.
    pub fn obs_column(&self, name: &str) -> Option<&ColumnValues> {
        self.obs.iter().find(|c| c.name == name).map(|c| &c.values)
    }

    /// `obsm['spatial']` as `[x, y]` per cell (the first two columns), when present.
    pub fn spatial(&self) -> Option<Vec<[f32; 2]>> {
        let e = self.obsm.get("spatial")?;
        if e.n_cols < 2 {
            return None;
        }
        Some(
            e.values
                .chunks_exact(e.n_cols)
                .map(|r| [r[0], r[1]])
                .collect(),
        )
    }

    /// `X` as a dense row-major `[n_obs, n_vars]` matrix (sparse layouts are expanded;
    /// repeated sparse entries are summed). Fails when the file has no `X`.
    pub fn dense_x(&self) -> Result<Vec<f32>, DataError> {
        let (n_obs, n_vars) = (self.n_obs(), self.n_vars());
        let x = self.x.as_ref().ok_or_else(|| DataError::Hdf5 {
            path: self.path.clone(),
            object: "/X".into(),
            message: "the file has no X matrix".into(),
        })?;
        let size = n_obs.checked_mul(n_vars).ok_or_else(|| DataError::Hdf5 {
            path: self.path.clone(),
            object: "/X".into(),
            message: format!("{n_obs} × {n_vars} does not fit in memory"),
        })?;
        let mut out = vec![0f32; size];
        match x {
            XMatrix::Dense(v) => out.copy_from_slice(v),
            XMatrix::Csr {
                indptr,
                indices,
                data,
            } => {
                for (i, w) in indptr.windows(2).enumerate() {
                    for k in w[0]..w[1] {
                        out[i * n_vars + indices[k]] += data[k];
                    }
                }
            }
            XMatrix::Csc {
                indptr,
                indices,
                data,
            } => {
                for (j, w) in indptr.windows(2).enumerate() {
                    for k in w[0]..w[1] {
                        out[indices[k] * n_vars + j] += data[k];
                    }
                }
            }
        }
        Ok(out)
    }

    /// `X` as a count table `[n_cells, n_genes]` in the canonical order of every reader
    /// (cells numeric when all names are integers, genes alphabetical), with control
    /// features ([`super::xenium::is_control_feature`]) dropped. Centroids come from
    /// `obsm['spatial']` when present, else `[NaN, NaN]` (fill them with
    /// [`super::attach_centroids`]); nucleus centroids are `None`.
    ///
    /// Meant for raw count matrices: fails with [`DataError::Hdf5`] on a negative or
    /// non-finite value, a repeated cell or gene name, or a missing `X`.
    pub fn to_cell_table(&self) -> Result<CellTable, DataError> {
        let dense = self.dense_x()?;
        let err = |object: &str, message: String| DataError::Hdf5 {
            path: self.path.clone(),
            object: object.into(),
            message,
        };
        if let Some(k) = dense.iter().position(|v| !(v.is_finite() && *v >= 0.0)) {
            let n_vars = self.n_vars().max(1);
            return Err(err(
                "/X",
                format!(
                    "entry [{}, {}] = {} is not a finite non-negative count; \
                     to_cell_table needs raw counts (use dense_x for normalised data)",
                    k / n_vars,
                    k % n_vars,
                    dense[k]
                ),
            ));
        }
        let keep: Vec<bool> = self
            .var_names
            .iter()
            .map(|g| !is_control_feature(g))
            .collect();
        let axes = canonical_axes(
            &self.obs_names,
            &self.var_names,
            &keep,
            |id| err("/obs", format!("cell name `{id}` appears more than once")),
            |g| err("/var", format!("gene name `{g}` appears more than once")),
        )?;
        let n_genes = axes.genes.len();
        let n_cells = axes.cell_ids.len();
        let mut counts = vec![0f32; n_cells * n_genes];
        let mut centroids = vec![[f32::NAN; 2]; n_cells];
        let spatial = self.spatial();
        for (i, row) in dense.chunks_exact(self.n_vars().max(1)).enumerate() {
            let r = axes.cell_row[i];
            for (j, &v) in row.iter().enumerate() {
                if let Some(g) = axes.gene_col[j] {
                    counts[r * n_genes + g] = v;
                }
            }
            if let Some(s) = &spatial {
                centroids[r] = s[i];
            }
        }
        Ok(CellTable {
            cell_ids: axes.cell_ids,
            genes: axes.genes,
            counts,
            centroids_um: centroids,
            nucleus_centroids_um: vec![None; n_cells],
        })
    }
}

/// Reads an `.h5ad` file (see the module docs for the layouts understood).
///
/// Fails with [`DataError::Io`] when the file does not exist and [`DataError::Hdf5`] (file,
/// object path, value) when it is not HDF5 or truncated, `obs`/`var` or their index is
/// missing, `X` has a shape other than `[n_obs, n_vars]`, sparse offsets are not monotone or
/// indices out of range, a column has the wrong length, or a categorical code is out of range.
pub fn read_h5ad(path: &Path) -> Result<AnnData, DataError> {
    let h5 = H5::open(path)?;
    let mut skipped = Vec::new();
    let (obs_names, obs) = read_dataframe(&h5, "obs", &mut skipped)?;
    let (var_names, var) = read_dataframe(&h5, "var", &mut skipped)?;
    let x = match h5.kind("X")? {
        None => None,
        Some(kind) => Some(read_x(&h5, kind, obs_names.len(), var_names.len())?),
    };
    let obsm = read_obsm(&h5, obs_names.len(), &mut skipped)?;
    Ok(AnnData {
        path: path.to_path_buf(),
        obs_names,
        var_names,
        x,
        obs,
        var,
        obsm,
        skipped,
    })
}

fn read_x(h5: &H5, kind: Kind, n_obs: usize, n_vars: usize) -> Result<XMatrix, DataError> {
    if kind == Kind::Dataset {
        let shape = h5.shape("X")?;
        if shape != [n_obs, n_vars] {
            return Err(h5.err(
                "X",
                format!("shape {shape:?} but obs has {n_obs} rows and var {n_vars}"),
            ));
        }
        return Ok(XMatrix::Dense(h5.read_f32("X")?));
    }
    let attrs = h5.attrs("X")?;
    let format = h5
        .attr_string("X", "encoding-type")?
        .or(h5.attr_string("X", "h5sparse_format")?)
        .unwrap_or_default();
    let csr = match format.as_str() {
        "csr_matrix" | "csr" => true,
        "csc_matrix" | "csc" => false,
        other => {
            return Err(h5.err(
                "X",
                format!("group with encoding `{other}`, expected csr_matrix or csc_matrix"),
            ))
        }
    };
    let shape = attrs
        .get("shape")
        .or(attrs.get("h5sparse_shape"))
        .and_then(int_array);
    if shape.as_deref() != Some(&[n_obs as i64, n_vars as i64][..]) {
        return Err(h5.err(
            "X@shape",
            format!("is {shape:?}, expected [{n_obs}, {n_vars}] (obs × var)"),
        ));
    }
    let data = h5.read_f32("X/data")?;
    let indptr = h5.read_i64("X/indptr")?;
    let indices = h5.read_i64("X/indices")?;
    let (major, minor) = if csr {
        (n_obs, n_vars)
    } else {
        (n_vars, n_obs)
    };
    let (indptr, indices) = check_compressed(h5, "X", &indptr, &indices, data.len(), major, minor)?;
    Ok(if csr {
        XMatrix::Csr {
            indptr,
            indices,
            data,
        }
    } else {
        XMatrix::Csc {
            indptr,
            indices,
            data,
        }
    })
}

fn int_array(v: &hdf5_pure::AttrValue) -> Option<Vec<i64>> {
    use hdf5_pure::AttrValue as A;
    Some(match v {
        A::I64Array(a) => a.clone(),
        A::I32Array(a) => a.iter().map(|&x| i64::from(x)).collect(),
        A::U64Array(a) => a
            .iter()
            .map(|&x| i64::try_from(x).ok())
            .collect::<Option<_>>()?,
        A::U32Array(a) => a.iter().map(|&x| i64::from(x)).collect(),
        _ => return None,
    })
}

/// Reads the index and columns of dataframe `name` (`obs` or `var`).
fn read_dataframe(
    h5: &H5,
    name: &str,
    skipped: &mut Vec<String>,
) -> Result<(Vec<String>, Vec<Column>), DataError> {
    match h5.kind(name)? {
        Some(Kind::Group) => read_group_dataframe(h5, name, skipped),
        Some(Kind::Dataset) => read_compound_dataframe(h5, name),
        None => Err(h5.err(name, "dataframe is missing; expected an AnnData .h5ad file")),
    }
}

fn read_group_dataframe(
    h5: &H5,
    df: &str,
    skipped: &mut Vec<String>,
) -> Result<(Vec<String>, Vec<Column>), DataError> {
    let index_key = h5
        .attr_string(df, "_index")?
        .unwrap_or_else(|| "_index".into());
    let index_obj = child(df, &index_key);
    let index = h5.read_strings(&index_obj)?;
    let n = index.len();
    let members = h5.members(df)?;
    let order: Vec<String> = match h5
        .attrs(df)?
        .get("column-order")
        .and_then(|v| v.as_strings())
    {
        Some(names) => names.to_vec(),
        None => members
            .iter()
            .map(|(m, _)| m.clone())
            .filter(|m| m != &index_key && m != "__categories")
            .collect(),
    };
    let mut columns = Vec::with_capacity(order.len());
    for name in order {
        let object = child(df, &name);
        let Some(kind) = members.iter().find(|(m, _)| *m == name).map(|(_, k)| *k) else {
            return Err(h5.err(
                &object,
                "listed in the dataframe's column-order but missing",
            ));
        };
        let values = match kind {
            Kind::Group => read_encoded_column(h5, &object)?,
            Kind::Dataset => read_plain_column(h5, df, &name, &object)?,
        };
        let Some(values) = values else {
            skipped.push(object);
            continue;
        };
        let len = column_len(&values);
        if len != n {
            return Err(h5.err(
                &object,
                format!("has {len} values but the index `{index_obj}` has {n}"),
            ));
        }
        columns.push(Column { name, values });
    }
    Ok((index, columns))
}

fn column_len(v: &ColumnValues) -> usize {
    match v {
        ColumnValues::Numeric(x) => x.len(),
        ColumnValues::Text(x) => x.len(),
        ColumnValues::Bool(x) => x.len(),
        ColumnValues::Categorical(c) => c.codes.len(),
    }
}

/// Categorical codes (-1 = missing) checked against the number of categories.
fn check_codes(
    h5: &H5,
    object: &str,
    codes: &[i64],
    n_categories: usize,
) -> Result<Vec<Option<u32>>, DataError> {
    codes
        .iter()
        .enumerate()
        .map(|(i, &c)| match c {
            -1 => Ok(None),
            c if c >= 0 && (c as u64) < n_categories as u64 => Ok(Some(c as u32)),
            c => Err(h5.err(
                object,
                format!("code {c} at row {i} is out of range -1..{n_categories}"),
            )),
        })
        .collect()
}

/// Category names: strings, or numbers formatted as text.
fn read_categories(h5: &H5, object: &str) -> Result<Vec<String>, DataError> {
    match h5.dtype(object)? {
        DType::String | DType::VariableLengthString => h5.read_strings(object),
        _ => Ok(h5
            .read_f64(object)?
            .into_iter()
            .map(|v| v.to_string())
            .collect()),
    }
}

fn bool_attr(v: Option<&hdf5_pure::AttrValue>) -> bool {
    use hdf5_pure::AttrValue as A;
    match v {
        Some(A::I8(x)) => *x != 0,
        Some(A::U8(x)) => *x != 0,
        Some(A::I32(x)) => *x != 0,
        Some(A::I64(x)) => *x != 0,
        _ => false,
    }
}

/// A column stored as a group (anndata ≥ 0.8 encodings); `None` for unsupported encodings.
fn read_encoded_column(h5: &H5, object: &str) -> Result<Option<ColumnValues>, DataError> {
    let encoding = h5.attr_string(object, "encoding-type")?.unwrap_or_default();
    match encoding.as_str() {
        "categorical" => {
            let categories = read_categories(h5, &child(object, "categories"))?;
            let codes_obj = child(object, "codes");
            let codes = h5.read_i64(&codes_obj)?;
            let codes = check_codes(h5, &codes_obj, &codes, categories.len())?;
            let ordered = bool_attr(h5.attrs(object)?.get("ordered"));
            Ok(Some(ColumnValues::Categorical(Categorical {
                codes,
                categories,
                ordered,
            })))
        }
        "nullable-integer" | "nullable-boolean" => {
            let values = h5.read_f64(&child(object, "values"))?;
            let mask_obj = child(object, "mask");
            let mask = h5.read_i64(&mask_obj)?;
            if mask.len() != values.len() {
                return Err(h5.err(
                    &mask_obj,
                    format!("has {} entries, values has {}", mask.len(), values.len()),
                ));
            }
            Ok(Some(ColumnValues::Numeric(
                values
                    .into_iter()
                    .zip(mask)
                    .map(|(v, m)| if m != 0 { f64::NAN } else { v })
                    .collect(),
            )))
        }
        _ => Ok(None),
    }
}

/// A column stored as a dataset: numbers, strings, booleans, or anndata 0.7 categorical codes.
fn read_plain_column(
    h5: &H5,
    df: &str,
    name: &str,
    object: &str,
) -> Result<Option<ColumnValues>, DataError> {
    // anndata 0.7: the codes carry a `categories` object-reference attribute pointing at
    // `<df>/__categories/<name>`; the fixed location is what is looked up.
    let legacy_categories = child(&child(df, "__categories"), name);
    if h5.kind(&legacy_categories)? == Some(Kind::Dataset) {
        let categories = read_categories(h5, &legacy_categories)?;
        let codes = h5.read_i64(object)?;
        let codes = check_codes(h5, object, &codes, categories.len())?;
        return Ok(Some(ColumnValues::Categorical(Categorical {
            codes,
            categories,
            ordered: false,
        })));
    }
    if h5.shape(object)?.len() != 1 {
        return Ok(None);
    }
    Ok(Some(match h5.dtype(object)? {
        DType::String | DType::VariableLengthString => ColumnValues::Text(h5.read_strings(object)?),
        DType::Enum(names) if is_bool_enum(&names) => {
            ColumnValues::Bool(h5.read_i64(object)?.into_iter().map(|v| v != 0).collect())
        }
        DType::F32
        | DType::F64
        | DType::I8
        | DType::I16
        | DType::I32
        | DType::I64
        | DType::U8
        | DType::U16
        | DType::U32
        | DType::U64 => ColumnValues::Numeric(h5.read_f64(object)?),
        _ => return Ok(None),
    }))
}

fn is_bool_enum(names: &[String]) -> bool {
    names.len() == 2 && names.iter().any(|n| n.eq_ignore_ascii_case("TRUE"))
}

/// Pre-0.7 dataframe: a compound dataset with an `index` field; categorical codes are
/// integer fields whose categories are in `uns/<field>_categories`.
fn read_compound_dataframe(h5: &H5, df: &str) -> Result<(Vec<String>, Vec<Column>), DataError> {
    let fields = h5.read_compound(df)?;
    let mut index = None;
    let mut columns = Vec::with_capacity(fields.len());
    for (name, field) in fields {
        if name == "index" || name == "_index" {
            match field {
                Field::Text(t) => index = Some(t),
                _ => return Err(h5.err(&format!("{df}.{name}"), "index field is not text")),
            }
            continue;
        }
        let cats_obj = format!("uns/{name}_categories");
        let values = match field {
            Field::Int(codes) if h5.kind(&cats_obj)? == Some(Kind::Dataset) => {
                let categories = read_categories(h5, &cats_obj)?;
                let codes = check_codes(h5, &format!("{df}.{name}"), &codes, categories.len())?;
                ColumnValues::Categorical(Categorical {
                    codes,
                    categories,
                    ordered: false,
                })
            }
            Field::Int(v) => ColumnValues::Numeric(v.into_iter().map(|x| x as f64).collect()),
            Field::Float(v) => ColumnValues::Numeric(v),
            Field::Text(v) => ColumnValues::Text(v),
            Field::Bool(v) => ColumnValues::Bool(v),
            Field::Array { .. } => continue,
        };
        columns.push(Column { name, values });
    }
    let index = index.ok_or_else(|| {
        h5.err(
            df,
            "compound dataframe has no `index` field with the row names",
        )
    })?;
    Ok((index, columns))
}

/// Dense numeric `obsm` entries of `n_obs` rows (group layout or pre-0.7 compound).
fn read_obsm(
    h5: &H5,
    n_obs: usize,
    skipped: &mut Vec<String>,
) -> Result<BTreeMap<String, Embedding>, DataError> {
    let mut out = BTreeMap::new();
    match h5.kind("obsm")? {
        None => {}
        Some(Kind::Group) => {
            for (name, kind) in h5.members("obsm")? {
                let object = child("obsm", &name);
                let numeric = kind == Kind::Dataset
                    && !matches!(
                        h5.dtype(&object)?,
                        DType::String | DType::VariableLengthString
                    );
                if !numeric {
                    skipped.push(object);
                    continue;
                }
                let shape = h5.shape(&object)?;
                let n_cols = match shape.as_slice() {
                    [r, c] if *r == n_obs => *c,
                    [r] if *r == n_obs => 1,
                    _ => {
                        return Err(h5.err(
                            &object,
                            format!(
                                "shape {shape:?}, expected [{n_obs}, n_cols] (one row per obs)"
                            ),
                        ))
                    }
                };
                let values = h5.read_f32(&object)?;
                out.insert(name, Embedding { n_cols, values });
            }
        }
        Some(Kind::Dataset) => {
            for (name, field) in h5.read_compound("obsm")? {
                let (n_cols, values) = match field {
                    Field::Array { width, values } => (width, values),
                    Field::Float(v) => (1, v),
                    _ => {
                        skipped.push(format!("obsm.{name}"));
                        continue;
                    }
                };
                let values: Vec<f32> = values.into_iter().map(|v| v as f32).collect();
                if values.len() != n_obs.saturating_mul(n_cols) {
                    return Err(h5.err(
                        &format!("obsm.{name}"),
                        format!("{} values, expected {n_obs} × {n_cols}", values.len()),
                    ));
                }
                out.insert(name, Embedding { n_cols, values });
            }
        }
    }
    Ok(out)
}
