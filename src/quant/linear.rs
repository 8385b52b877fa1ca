//! A linear layer's parameters, f32 or int8 with per-output-channel scales: the weight type
//! shared by the model file ([`crate::engine`]) and the GPU upload ([`crate::gpu`]).

use std::borrow::Cow;

/// Weight matrix of a [`Linear`] layer, `[out, in]` row-major.
#[derive(Clone, Debug, PartialEq)]
pub enum LinearWeight {
    /// Full-precision weights `[out * in]`.
    F32(Vec<f32>),
    /// Int8 weights `q` `[out * in]` with per-output-row scales `scale` `[out]`; `w = q * scale`.
    Int8 {
        /// Quantised values in `[-127, 127]`.
        q: Vec<i8>,
        /// Per-output-channel scales.
        scale: Vec<f32>,
    },
}

/// A fully connected layer `y = x · Wᵀ + bias` mapping `[n, in_dim]` to `[n, out_dim]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Linear {
    /// Output features.
    pub out_dim: usize,
    /// Input features.
    pub in_dim: usize,
    /// Weights `[out_dim, in_dim]`.
    pub weight: LinearWeight,
    /// Bias `[out_dim]`.
    pub bias: Vec<f32>,
}

impl Linear {
    /// Whether the weights are int8.
    pub fn is_int8(&self) -> bool {
        matches!(self.weight, LinearWeight::Int8 { .. })
    }

    /// The weights as f32 `[out, in]` (dequantised if int8).
    pub fn weight_f32(&self) -> Cow<'_, [f32]> {
        match &self.weight {
            LinearWeight::F32(w) => Cow::Borrowed(w),
            LinearWeight::Int8 { q, scale } => {
                Cow::Owned(super::dequantize(q, scale, self.out_dim, self.in_dim))
            }
        }
    }

    /// An int8 copy (per-output-channel symmetric); int8 layers are returned unchanged.
    pub fn quantized(&self) -> Linear {
        match &self.weight {
            LinearWeight::F32(w) => {
                let (q, scale) =
                    super::quantize_per_channel_symmetric(w, self.out_dim, self.in_dim);
                Linear {
                    weight: LinearWeight::Int8 { q, scale },
                    ..self.clone()
                }
            }
            LinearWeight::Int8 { .. } => self.clone(),
        }
    }

    /// A copy whose input is widened to `in_dim` columns (`>= self.in_dim`), the new columns
    /// weighted 0 (int8: q = 0, same scales), e.g. to read a prefix of wider input rows.
    pub fn zero_padded_inputs(&self, in_dim: usize) -> Linear {
        fn pad<T: Copy>(w: &[T], rows: usize, from: usize, to: usize, zero: T) -> Vec<T> {
            let mut out = vec![zero; rows * to];
            for r in 0..rows {
                out[r * to..r * to + from].copy_from_slice(&w[r * from..(r + 1) * from]);
            }
            out
        }
        let (rows, from) = (self.out_dim, self.in_dim);
        let to = in_dim.max(from);
        let weight = match &self.weight {
            LinearWeight::F32(w) => LinearWeight::F32(pad(w, rows, from, to, 0.0)),
            LinearWeight::Int8 { q, scale } => LinearWeight::Int8 { q: pad(q, rows, from, to, 0), scale: scale.clone() },
        };
        Linear { in_dim: to, weight, ..self.clone() }
    }

    /// Stacks the output rows of layers with the same `in_dim` and weight kind, e.g. q, k, v
    /// into one `[3D, D]` layer. Returns `None` if the parts disagree or `parts` is empty.
    /// Exact for int8 because scales are per output row.
    pub fn concat_rows(parts: &[&Linear]) -> Option<Linear> {
        let first = parts.first()?;
        if parts
            .iter()
            .any(|p| p.in_dim != first.in_dim || p.is_int8() != first.is_int8())
        {
            return None;
        }
        let out_dim = parts.iter().map(|p| p.out_dim).sum();
        let bias = parts.iter().flat_map(|p| p.bias.iter().copied()).collect();
        let weight = if first.is_int8() {
            let mut q = Vec::new();
            let mut scale = Vec::new();
            for p in parts {
                if let LinearWeight::Int8 { q: pq, scale: ps } = &p.weight {
                    q.extend_from_slice(pq);
                    scale.extend_from_slice(ps);
                }
            }
            LinearWeight::Int8 { q, scale }
        } else {
            LinearWeight::F32(
                parts
                    .iter()
                    .flat_map(|p| p.weight_f32().into_owned())
                    .collect(),
            )
        };
        Some(Linear {
            out_dim,
            in_dim: first.in_dim,
            weight,
            bias,
        })
    }
}
