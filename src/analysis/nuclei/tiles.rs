//! The tile loop shared by detection and watershed: square tiles with a halo, each read with
//! the image's edge pixels replicated and Gaussian-smoothed on its own, so a tile's core
//! pixels get exactly the values whole-image processing would give (same taps, same order).

use super::detect::NucleusImage;
use crate::analysis::error::AnalysisError;
use crate::util::parallel::map_row_chunks;

/// An image of `width × height` pixels cut into `tile × tile` cores with `halo` pixels around.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TileGrid {
    pub width: usize,
    pub height: usize,
    pub tile: usize,
    pub halo: usize,
}

/// One tile: its core and the region (core ± halo, possibly past the image) read for it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tile {
    /// Global column, row of the region's pixel (0, 0) (negative past the top/left edge).
    pub x0: isize,
    pub y0: isize,
    /// Core size (the pixels this tile decides), pixels.
    pub core_w: usize,
    pub core_h: usize,
    /// Region size, `core + 2·halo`.
    pub rw: usize,
    pub rh: usize,
    pub halo: usize,
}

impl TileGrid {
    fn tiles_x(&self) -> usize {
        self.width.div_ceil(self.tile)
    }

    /// Number of tiles.
    pub fn n_tiles(&self) -> usize {
        self.tiles_x() * self.height.div_ceil(self.tile)
    }

    /// Side of the largest region, pixels.
    pub fn region_side(&self) -> usize {
        self.tile + 2 * self.halo
    }

    /// Tile `t` (raster order of tiles).
    pub fn tile(&self, t: usize) -> Tile {
        let (tx, ty) = (t % self.tiles_x(), t / self.tiles_x());
        let halo = self.halo;
        let core_w = self.tile.min(self.width - tx * self.tile);
        let core_h = self.tile.min(self.height - ty * self.tile);
        Tile {
            x0: (tx * self.tile) as isize - halo as isize,
            y0: (ty * self.tile) as isize - halo as isize,
            core_w,
            core_h,
            rw: core_w + 2 * halo,
            rh: core_h + 2 * halo,
            halo,
        }
    }

    /// `f` on every tile (in parallel natively), results concatenated in tile order.
    pub fn map<T: Send>(&self, f: impl Fn(&Tile) -> Vec<T> + Sync) -> Vec<T> {
        self.map_range(0..self.n_tiles(), f)
    }

    /// `f` on tiles `range` (in parallel natively), results concatenated in tile order.
    pub fn map_range<T: Send>(&self, range: std::ops::Range<usize>, f: impl Fn(&Tile) -> Vec<T> + Sync) -> Vec<T> {
        let start = range.start;
        map_row_chunks(range.len(), 2, |r| r.flat_map(|i| f(&self.tile(start + i))).collect::<Vec<_>>())
    }
}

impl Tile {
    /// The region's pixels `[rh, rw]` as f32, read from `image` as one window (the region
    /// clipped to the image); pixels past the image replicate the nearest edge pixel, as
    /// whole-image processing does.
    pub fn read(&self, image: &dyn NucleusImage) -> Result<Vec<f32>, AnalysisError> {
        let (w, h) = image.size();
        let (wx0, wy0) = (self.x0.max(0) as usize, self.y0.max(0) as usize);
        let wx1 = ((self.x0 + self.rw as isize) as usize).min(w);
        let wy1 = ((self.y0 + self.rh as isize) as usize).min(h);
        let ww = wx1 - wx0;
        let win = image.window([wx0, wy0, ww, wy1 - wy0])?;
        let mut raw = vec![0f32; self.rw * self.rh];
        for r in 0..self.rh {
            let gy = (self.y0 + r as isize).clamp(0, h as isize - 1) as usize - wy0;
            let row = &win[gy * ww..(gy + 1) * ww];
            for (c, v) in raw[r * self.rw..(r + 1) * self.rw].iter_mut().enumerate() {
                *v = f32::from(row[(self.x0 + c as isize).clamp(0, w as isize - 1) as usize - wx0]);
            }
        }
        Ok(raw)
    }

    /// Separable Gaussian of the region `raw` `[rh, rw]` with taps clamped to the region's
    /// edge (those values only reach halo pixels when the halo covers the kernel radius) →
    /// `(smoothed, scratch)`, both `[rh, rw]` (the scratch buffer is free for reuse).
    pub fn gaussian(&self, raw: Vec<f32>, kernel: &[f32]) -> (Vec<f32>, Vec<f32>) {
        let (rw, rh) = (self.rw, self.rh);
        let kr = (kernel.len() / 2) as isize;
        let mut tmp = vec![0f32; rw * rh];
        for r in 0..rh {
            let src = &raw[r * rw..(r + 1) * rw];
            for c in 0..rw {
                let mut acc = 0.0f32;
                for (i, &kv) in kernel.iter().enumerate() {
                    let cc = (c as isize + i as isize - kr).clamp(0, rw as isize - 1) as usize;
                    acc += kv * src[cc];
                }
                tmp[r * rw + c] = acc;
            }
        }
        let mut g = raw;
        for r in 0..rh {
            for c in 0..rw {
                let mut acc = 0.0f32;
                for (i, &kv) in kernel.iter().enumerate() {
                    let rr = (r as isize + i as isize - kr).clamp(0, rh as isize - 1) as usize;
                    acc += kv * tmp[rr * rw + c];
                }
                g[r * rw + c] = acc;
            }
        }
        (g, tmp)
    }

    /// Global `(row, col)` of region pixel `(r, c)`.
    pub fn global(&self, r: usize, c: usize) -> (isize, isize) {
        (self.y0 + r as isize, self.x0 + c as isize)
    }
}
