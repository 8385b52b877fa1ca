//! SPATIA niches and tissue regions: a grid of square, non-overlapping image tiles over the
//! morphology image, the cells whose centroids fall in each tile, and blocks of tiles.
//!
//! Geometry (pixels of the image, `[col, row]`, see [`ImageFrame`]): a cell's centroid (µm) is
//! converted to continuous pixel coordinates and rounded to the pixel that contains it
//! (pixel `c` spans `[c - 0.5, c + 0.5)`, so `floor(px + 0.5)`). Niche `(niche_col, niche_row)`
//! covers pixels `[niche_col * tile_px, (niche_col + 1) * tile_px)` ×
//! `[niche_row * tile_px, (niche_row + 1) * tile_px)`. The grid starts at pixel `(0, 0)`; at the
//! right and bottom edges a partial tile is kept and zero-padded ([`EdgePolicy::Pad`]) or
//! dropped ([`EdgePolicy::Drop`]). Cells whose pixel lies outside the image, or in a dropped
//! partial tile, belong to no niche and are listed in [`NicheGrid::unassigned`].
//!
//! Tissue regions are `region_niches × region_niches` blocks of niches over the niche grid
//! (SPATIA's tissue level: 4 × 4 niches of 256 px). Regions at the right and bottom edges may be
//! partial; their absent slots are masked.

use super::error::DataError;
use super::image::{GrayImage16, ImageFrame};
use super::patches::EdgePolicy;

/// Default niche side length in image pixels (SPATIA: 256 px).
pub const DEFAULT_NICHE_TILE_PX: usize = 256;

/// Default tissue-region side length in niches (SPATIA: 4 × 4 niches).
pub const DEFAULT_REGION_NICHES: usize = 4;

/// Parameters of [`NicheGrid::build`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NicheOptions {
    /// Niche side length in image pixels (≥ 1); default [`DEFAULT_NICHE_TILE_PX`].
    pub tile_px: usize,
    /// Partial tiles at the right/bottom image edge: kept and zero-padded, or dropped.
    pub edge: EdgePolicy,
    /// Tissue-region side length in niches (≥ 1); default [`DEFAULT_REGION_NICHES`].
    pub region_niches: usize,
}

impl Default for NicheOptions {
    fn default() -> Self {
        NicheOptions {
            tile_px: DEFAULT_NICHE_TILE_PX,
            edge: EdgePolicy::Pad,
            region_niches: DEFAULT_REGION_NICHES,
        }
    }
}

/// One niche: a `tile_px × tile_px` tile of the image and the cells whose centroids fall in it.
#[derive(Debug, Clone, PartialEq)]
pub struct Niche {
    /// Column of the niche in the niche grid.
    pub niche_col: usize,
    /// Row of the niche in the niche grid.
    pub niche_row: usize,
    /// Image pixel `[col, row]` of the tile's top-left corner.
    pub origin_px: [usize; 2],
    /// Width and height `[cols, rows]` of the part of the tile inside the image (equal to
    /// `tile_px` except for padded edge tiles).
    pub extent_px: [usize; 2],
    /// Whether the tile reaches past the image (only with [`EdgePolicy::Pad`]).
    pub padded: bool,
    /// Indices of the cells assigned to this niche, ascending.
    pub cells: Vec<u32>,
}

/// The niche grid of one image: niches in row-major order, their cells and summed expression.
#[derive(Debug, Clone, PartialEq)]
pub struct NicheGrid {
    /// Niche side length in pixels.
    pub tile_px: usize,
    /// Edge policy the grid was built with.
    pub edge: EdgePolicy,
    /// Image size `[width, height]` in pixels.
    pub image_size: [usize; 2],
    /// Number of niche columns.
    pub n_cols: usize,
    /// Number of niche rows.
    pub n_rows: usize,
    /// Niches, `[n_rows, n_cols]` row-major: niche `(c, r)` is `niches[r * n_cols + c]`.
    pub niches: Vec<Niche>,
    /// Genes per cell of the counts the grid was built from.
    pub n_genes: usize,
    /// Summed counts of each niche's cells, `[niches, genes]` row-major (accumulated in f64).
    pub gene_sums: Vec<f32>,
    /// Cells in no niche (centroid outside the image or in a dropped edge tile), ascending.
    pub unassigned: Vec<u32>,
    /// Niche of each cell (`None` for unassigned cells), `[cells]`.
    pub niche_of_cell: Vec<Option<u32>>,
}

/// A tissue region: a `side × side` block of niches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TissueRegion {
    /// Column of the region in the region grid.
    pub region_col: usize,
    /// Row of the region in the region grid.
    pub region_row: usize,
    /// Side length in niches.
    pub side: usize,
    /// Niche index (into [`NicheGrid::niches`]) of each slot, `[side, side]` row-major;
    /// `None` where the slot lies beyond the niche grid (partial edge region).
    pub niches: Vec<Option<usize>>,
    /// `[side, side]` row-major: `true` where the slot holds a niche with at least one cell.
    pub mask: Vec<bool>,
}

impl TissueRegion {
    /// Number of slots holding a non-empty niche.
    pub fn n_present(&self) -> usize {
        self.mask.iter().filter(|&&m| m).count()
    }
}

impl NicheGrid {
    /// Builds the niche grid of an image of `image_size = [width, height]` pixels placed by
    /// `frame`, assigning each cell by its centroid and summing its counts into its niche.
    ///
    /// `centroids_um` is `[cells]` of slide positions `[x, y]` in µm; `counts` is
    /// `[cells, n_genes]` row-major.
    ///
    /// Errors: [`DataError::InvalidArgument`] for `tile_px == 0`, `region_niches == 0`, an
    /// empty image or an invalid frame; [`DataError::Shape`] when `counts` does not hold
    /// `cells * n_genes` values; [`DataError::InvalidValue`] for a non-finite centroid (naming
    /// the cell).
    pub fn build(
        centroids_um: &[[f32; 2]],
        counts: &[f32],
        n_genes: usize,
        frame: &ImageFrame,
        image_size: [usize; 2],
        opts: &NicheOptions,
    ) -> Result<NicheGrid, DataError> {
        let n_cells = centroids_um.len();
        let expected = n_cells.saturating_mul(n_genes);
        if counts.len() != expected {
            return Err(DataError::Shape {
                what: "counts [cells, genes] of the niche grid",
                expected,
                found: counts.len(),
            });
        }
        Self::build_from_rows(centroids_um, |cell| &counts[cell * n_genes..(cell + 1) * n_genes], n_genes, frame, image_size, opts)
    }

    /// [`Self::build`] with each cell's counts read through `row(cell)` (`[n_genes]`) instead
    /// of a dense `[cells, n_genes]` matrix, so a caller holding counts in another layout
    /// (sparse, or shared rows) need not materialise them. Same grid and errors; a row of
    /// another length is a [`DataError::InvalidValue`] naming the cell.
    pub fn build_from_rows<'r>(
        centroids_um: &[[f32; 2]],
        row: impl Fn(usize) -> &'r [f32],
        n_genes: usize,
        frame: &ImageFrame,
        image_size: [usize; 2],
        opts: &NicheOptions,
    ) -> Result<NicheGrid, DataError> {
        check_options(opts)?;
        let [width, height] = image_size;
        if width == 0 || height == 0 {
            return Err(DataError::InvalidArgument {
                name: "image_size",
                value: format!("{width}x{height}"),
                expected: "a non-empty image (width and height >= 1)",
            });
        }
        let frame_ok = frame.um_per_px.is_finite()
            && frame.um_per_px > 0.0
            && frame.origin_um.iter().all(|v| v.is_finite());
        if !frame_ok {
            return Err(DataError::InvalidArgument {
                name: "frame",
                value: format!("{frame:?}"),
                expected: "a finite origin and a pixel size > 0 µm",
            });
        }
        let n_cells = centroids_um.len();
        let tile = opts.tile_px;
        let (n_cols, n_rows) = match opts.edge {
            EdgePolicy::Pad => (width.div_ceil(tile), height.div_ceil(tile)),
            EdgePolicy::Drop => (width / tile, height / tile),
        };
        let mut niches: Vec<Niche> = (0..n_rows)
            .flat_map(|r| (0..n_cols).map(move |c| (c, r)))
            .map(|(c, r)| {
                let origin = [c * tile, r * tile];
                let extent = [tile.min(width - origin[0]), tile.min(height - origin[1])];
                Niche {
                    niche_col: c,
                    niche_row: r,
                    origin_px: origin,
                    extent_px: extent,
                    padded: extent != [tile, tile],
                    cells: Vec::new(),
                }
            })
            .collect();

        let mut sums = vec![0f64; niches.len() * n_genes];
        let mut unassigned = Vec::new();
        let mut niche_of_cell = Vec::with_capacity(n_cells);
        for (cell, &um) in centroids_um.iter().enumerate() {
            if !um.iter().all(|v| v.is_finite()) {
                return Err(DataError::InvalidValue {
                    field: format!("centroids_um[{cell}] (cell {cell})"),
                    value: format!("[{}, {}]", um[0], um[1]),
                    expected: "finite coordinates in µm; drop or fix cells without a centroid"
                        .into(),
                });
            }
            let px = frame.um_to_px(um);
            let pixel = px.map(|v| (f64::from(v) + 0.5).floor());
            let inside = pixel[0] >= 0.0
                && pixel[1] >= 0.0
                && pixel[0] < width as f64
                && pixel[1] < height as f64;
            let slot = inside
                .then(|| (pixel[0] as usize / tile, pixel[1] as usize / tile))
                .filter(|&(c, r)| c < n_cols && r < n_rows)
                .map(|(c, r)| r * n_cols + c);
            match slot {
                Some(n) => {
                    niches[n].cells.push(cell as u32);
                    let row = row(cell);
                    if row.len() != n_genes {
                        return Err(DataError::InvalidValue {
                            field: format!("counts row of cell {cell}"),
                            value: format!("{} values", row.len()),
                            expected: format!("{n_genes} values (one per gene)"),
                        });
                    }
                    for (acc, &v) in sums[n * n_genes..(n + 1) * n_genes].iter_mut().zip(row) {
                        *acc += f64::from(v);
                    }
                    niche_of_cell.push(Some(n as u32));
                }
                None => {
                    unassigned.push(cell as u32);
                    niche_of_cell.push(None);
                }
            }
        }
        Ok(NicheGrid {
            tile_px: tile,
            edge: opts.edge,
            image_size,
            n_cols,
            n_rows,
            niches,
            n_genes,
            gene_sums: sums.into_iter().map(|v| v as f32).collect(),
            unassigned,
            niche_of_cell,
        })
    }

    /// Number of niches (`n_cols * n_rows`).
    pub fn len(&self) -> usize {
        self.niches.len()
    }

    /// Whether the grid has no niches (image smaller than one tile with [`EdgePolicy::Drop`]).
    pub fn is_empty(&self) -> bool {
        self.niches.is_empty()
    }

    /// Index of niche `(niche_col, niche_row)`, `None` outside the grid.
    pub fn index(&self, niche_col: usize, niche_row: usize) -> Option<usize> {
        (niche_col < self.n_cols && niche_row < self.n_rows)
            .then(|| niche_row * self.n_cols + niche_col)
    }

    /// Summed counts of niche `index`, `[genes]`; `None` for an index outside the grid.
    pub fn gene_sum(&self, index: usize) -> Option<&[f32]> {
        let start = index.checked_mul(self.n_genes)?;
        self.gene_sums.get(start..start + self.n_genes)
    }

    /// The image tile of niche `index` as a `tile_px × tile_px` image (raw intensities,
    /// `[tile_px, tile_px]` row-major); pixels beyond the image read as 0 in padded tiles.
    ///
    /// Errors: [`DataError::InvalidArgument`] if `index` is outside the grid or `image` is not
    /// the size the grid was built for.
    pub fn patch(&self, image: &GrayImage16, index: usize) -> Result<GrayImage16, DataError> {
        if [image.width, image.height] != self.image_size {
            return Err(DataError::InvalidArgument {
                name: "image",
                value: format!("{}x{} px", image.width, image.height),
                expected: "the image the niche grid was built for (same width and height)",
            });
        }
        let niche = self
            .niches
            .get(index)
            .ok_or_else(|| DataError::InvalidArgument {
                name: "index",
                value: format!("{index} (grid of {} niches)", self.niches.len()),
                expected: "a niche index below the number of niches",
            })?;
        let tile = self.tile_px;
        let [c0, r0] = niche.origin_px;
        let [w, h] = niche.extent_px;
        let mut pixels = vec![0u16; tile * tile];
        for r in 0..h {
            let src = (r0 + r) * image.width + c0;
            pixels[r * tile..r * tile + w].copy_from_slice(&image.pixels[src..src + w]);
        }
        GrayImage16::new(tile, tile, pixels)
    }

    /// Tissue regions of `side × side` niches (see [`TissueRegion`]), row-major over the region
    /// grid of `ceil(n_cols / side) × ceil(n_rows / side)`; every niche lies in exactly one
    /// region. Errors with [`DataError::InvalidArgument`] for `side == 0`.
    pub fn tissue_regions(&self, side: usize) -> Result<Vec<TissueRegion>, DataError> {
        check_region_side(side)?;
        let (cols, rows) = (self.n_cols.div_ceil(side), self.n_rows.div_ceil(side));
        let mut regions = Vec::with_capacity(cols * rows);
        for region_row in 0..rows {
            for region_col in 0..cols {
                let mut niches = Vec::with_capacity(side * side);
                let mut mask = Vec::with_capacity(side * side);
                for dr in 0..side {
                    for dc in 0..side {
                        let slot = self.index(region_col * side + dc, region_row * side + dr);
                        mask.push(slot.is_some_and(|n| !self.niches[n].cells.is_empty()));
                        niches.push(slot);
                    }
                }
                regions.push(TissueRegion {
                    region_col,
                    region_row,
                    side,
                    niches,
                    mask,
                });
            }
        }
        Ok(regions)
    }
}

fn check_options(opts: &NicheOptions) -> Result<(), DataError> {
    if opts.tile_px == 0 {
        return Err(DataError::InvalidArgument {
            name: "tile_px",
            value: "0".into(),
            expected: "a niche side length of at least 1 pixel (SPATIA uses 256)",
        });
    }
    check_region_side(opts.region_niches)
}

fn check_region_side(side: usize) -> Result<(), DataError> {
    if side == 0 {
        return Err(DataError::InvalidArgument {
            name: "region_niches",
            value: "0".into(),
            expected: "a tissue-region side of at least 1 niche (SPATIA uses 4)",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const UNIT: ImageFrame = ImageFrame {
        origin_um: [0.0, 0.0],
        um_per_px: 1.0,
    };

    #[test]
    fn assignment_follows_pixel_rounding_and_edges() {
        // 10×7 image, tiles of 4: Pad gives 3×2 niches, Drop 2×1.
        let cells = [
            [3.49, 0.0], // pixel 3 → niche (0, 0)
            [3.5, 0.0],  // pixel 4 → niche (1, 0)
            [9.0, 6.0],  // pixel (9, 6) → niche (2, 1), padded
            [-0.6, 1.0], // pixel -1 → outside
            [10.0, 1.0], // pixel 10 → outside
        ];
        let counts: Vec<f32> = (0..10).map(|v| v as f32).collect();
        let opts = NicheOptions {
            tile_px: 4,
            edge: EdgePolicy::Pad,
            region_niches: 2,
        };
        let g = NicheGrid::build(&cells, &counts, 2, &UNIT, [10, 7], &opts).unwrap();
        assert_eq!((g.n_cols, g.n_rows), (3, 2));
        assert_eq!(g.niches[0].cells, vec![0]);
        assert_eq!(g.niches[1].cells, vec![1]);
        assert_eq!(g.niches[5].cells, vec![2]);
        assert!(g.niches[5].padded && g.niches[5].extent_px == [2, 3]);
        assert_eq!(g.unassigned, vec![3, 4]);
        assert_eq!(g.gene_sum(5).unwrap(), &[4.0, 5.0]);

        // Rows read through a closure (here: every cell's counts from cell 4 − cell, reversed
        // order) give the grid of the matrix holding those rows.
        let reversed: Vec<f32> = (0..5).rev().flat_map(|c| [counts[2 * c], counts[2 * c + 1]]).collect();
        let from_rows = NicheGrid::build_from_rows(&cells, |c| &counts[2 * (4 - c)..2 * (4 - c) + 2], 2, &UNIT, [10, 7], &opts).unwrap();
        assert_eq!(from_rows, NicheGrid::build(&cells, &reversed, 2, &UNIT, [10, 7], &opts).unwrap());
        assert_ne!(from_rows.gene_sums, g.gene_sums);
        let short = NicheGrid::build_from_rows(&cells, |c| &counts[c..c + 1], 2, &UNIT, [10, 7], &opts).unwrap_err().to_string();
        assert!(short.contains("cell 0") && short.contains("1 values"), "{short}");

        let drop = NicheOptions {
            edge: EdgePolicy::Drop,
            ..opts
        };
        let g = NicheGrid::build(&cells, &counts, 2, &UNIT, [10, 7], &drop).unwrap();
        assert_eq!((g.n_cols, g.n_rows), (2, 1));
        assert_eq!(g.unassigned, vec![2, 3, 4]);
        assert!(g.niches.iter().all(|n| !n.padded));
    }

    #[test]
    fn regions_mask_absent_and_empty_niches() {
        let cells = [[0.0, 0.0], [9.0, 6.0]];
        let opts = NicheOptions {
            tile_px: 4,
            edge: EdgePolicy::Pad,
            region_niches: 2,
        };
        let g = NicheGrid::build(&cells, &[1.0, 1.0], 1, &UNIT, [10, 7], &opts).unwrap();
        let regions = g.tissue_regions(2).unwrap();
        assert_eq!(regions.len(), 2);
        assert_eq!(regions[0].niches, vec![Some(0), Some(1), Some(3), Some(4)]);
        assert_eq!(regions[0].mask, vec![true, false, false, false]);
        assert_eq!(regions[1].niches, vec![Some(2), None, Some(5), None]);
        assert_eq!(regions[1].mask, vec![false, false, true, false]);
    }

    #[test]
    fn padded_patch_reads_zero_outside() {
        let img = GrayImage16::new(3, 2, (1..=6).collect()).unwrap();
        let opts = NicheOptions {
            tile_px: 2,
            edge: EdgePolicy::Pad,
            region_niches: 1,
        };
        let g = NicheGrid::build(&[], &[], 0, &UNIT, [3, 2], &opts).unwrap();
        assert_eq!(g.patch(&img, 0).unwrap().pixels, vec![1, 2, 4, 5]);
        assert_eq!(g.patch(&img, 1).unwrap().pixels, vec![3, 0, 6, 0]);
        assert!(g.patch(&img, 2).is_err());
    }
}
