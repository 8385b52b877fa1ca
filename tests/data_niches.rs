//! SPATIA niches, tissue regions and the spatial neighbour index on the real BIDCell Xenium
//! breast crop (`scripts/fetch_data.sh`): 1,135 cells over the 2400 × 1800 px DAPI image.
#![cfg(feature = "native-io")]

mod common;


use common::{crop_cells, crop_dapi};
use cellsymphony::data::{
    squared_distance, DataError,
    EdgePolicy, GrayImage16, Neighbor, NicheGrid, NicheOptions, SelfMatch, SpatialIndex,
    XENIUM_CROP_FRAME,
};
use cellsymphony::util::rng::SplitMix64;

fn grid(edge: EdgePolicy) -> NicheGrid {
    let t = crop_cells();
    let img = crop_dapi();
    let opts = NicheOptions {
        edge,
        ..NicheOptions::default()
    };
    NicheGrid::build(
        &t.centroids_um,
        &t.counts,
        t.n_genes(),
        &XENIUM_CROP_FRAME,
        [img.width, img.height],
        &opts,
    )
    .unwrap()
}

/// The pixel `[col, row]` containing each centroid (pixel `c` spans `[c - 0.5, c + 0.5)`),
/// computed independently of the grid.
fn centroid_pixels() -> Vec<[i64; 2]> {
    crop_cells()
        .centroids_um
        .iter()
        .map(|&um| {
            XENIUM_CROP_FRAME
                .um_to_px(um)
                .map(|p| (f64::from(p) + 0.5).floor() as i64)
        })
        .collect()
}

#[test]
fn every_cell_lands_in_exactly_one_niche() {
    let t = crop_cells();
    let img = crop_dapi();
    assert_eq!((img.width, img.height), (2400, 1800));
    assert_eq!(t.n_cells(), 1135);
    let g = grid(EdgePolicy::Pad);
    assert_eq!((g.n_cols, g.n_rows, g.len()), (10, 8, 80));
    let pixels = centroid_pixels();
    let outside: Vec<u32> = (0..t.n_cells() as u32)
        .filter(|&i| {
            let [c, r] = pixels[i as usize];
            c < 0 || r < 0 || c >= 2400 || r >= 1800
        })
        .collect();
    assert_eq!(g.unassigned, outside);
    let mut hits = vec![0u32; t.n_cells()];
    for (n, niche) in g.niches.iter().enumerate() {
        assert_eq!(n, niche.niche_row * g.n_cols + niche.niche_col);
        assert!(niche.cells.windows(2).all(|w| w[0] < w[1]));
        for &cell in &niche.cells {
            hits[cell as usize] += 1;
            assert_eq!(g.niche_of_cell[cell as usize], Some(n as u32));
            // The cell's pixel lies inside the niche's tile.
            let [c, r] = pixels[cell as usize];
            let [c0, r0] = niche.origin_px.map(|v| v as i64);
            assert!(
                c >= c0 && c < c0 + 256 && r >= r0 && r < r0 + 256,
                "cell {cell}"
            );
        }
    }
    for &cell in &g.unassigned {
        hits[cell as usize] += 1;
    }
    assert!(hits.iter().all(|&h| h == 1), "a cell is in 0 or 2+ niches");
    let occupied = g.niches.iter().filter(|n| !n.cells.is_empty()).count();
    let largest = g.niches.iter().map(|n| n.cells.len()).max().unwrap();
    println!(
        "crop: {} niches, {occupied} with cells, largest {largest} cells, {} cells outside the image",
        g.len(),
        g.unassigned.len()
    );
    assert!(occupied > 40, "{occupied}");
    // Edge tiles: the last column is 2400 - 9*256 = 96 px wide, the last row 1800 - 7*256 = 8.
    assert_eq!(g.niches[9].extent_px, [96, 256]);
    assert_eq!(g.niches[79].extent_px, [96, 8]);
    assert_eq!(g.niches.iter().filter(|n| n.padded).count(), 10 + 8 - 1);
}

#[test]
fn niche_gene_sums_add_up_to_the_matrix() {
    let t = crop_cells();
    let g = grid(EdgePolicy::Pad);
    let genes = t.n_genes();
    assert_eq!(g.gene_sums.len(), g.len() * genes);
    // Per niche: the sum of its cells' rows (integer counts: exact).
    for (n, niche) in g.niches.iter().enumerate() {
        let mut want = vec![0f64; genes];
        for &cell in &niche.cells {
            for (w, &v) in want.iter_mut().zip(t.row(cell as usize)) {
                *w += f64::from(v);
            }
        }
        let got: Vec<f64> = g
            .gene_sum(n)
            .unwrap()
            .iter()
            .map(|&v| f64::from(v))
            .collect();
        assert_eq!(got, want, "niche {n}");
    }
    // Over all niches: the whole matrix minus cells outside the image.
    let total: f64 = t.counts.iter().map(|&v| f64::from(v)).sum();
    let outside: f64 = g
        .unassigned
        .iter()
        .flat_map(|&c| t.row(c as usize))
        .map(|&v| f64::from(v))
        .sum();
    let niches: f64 = g.gene_sums.iter().map(|&v| f64::from(v)).sum();
    assert_eq!(niches + outside, total);
    assert!(total > 100_000.0, "{total}");
    for j in 0..genes {
        let col: f64 = (0..t.n_cells())
            .filter(|&c| g.niche_of_cell[c].is_some())
            .map(|c| f64::from(t.row(c)[j]))
            .sum();
        let in_niches: f64 = (0..g.len())
            .map(|n| f64::from(g.gene_sum(n).unwrap()[j]))
            .sum();
        assert_eq!(in_niches, col, "gene {}", t.genes[j]);
    }
}

#[test]
fn niche_patches_equal_the_image() {
    let img = crop_dapi();
    for edge in [EdgePolicy::Pad, EdgePolicy::Drop] {
        let g = grid(edge);
        for (n, niche) in g.niches.iter().enumerate() {
            let patch = g.patch(img, n).unwrap();
            assert_eq!((patch.width, patch.height), (256, 256));
            let [c0, r0] = niche.origin_px;
            for r in 0..256 {
                for c in 0..256 {
                    let want = img.get((c0 + c) as isize, (r0 + r) as isize).unwrap_or(0);
                    assert_eq!(
                        patch.pixels[r * 256 + c],
                        want,
                        "niche {n} pixel ({c}, {r})"
                    );
                }
            }
        }
    }
    let g = grid(EdgePolicy::Pad);
    assert!(g.patch(img, 80).is_err());
    let small = GrayImage16::new(2, 2, vec![0; 4]).unwrap();
    let e = g.patch(&small, 0).unwrap_err().to_string();
    assert!(e.contains("2x2"), "{e}");
}

#[test]
fn drop_policy_leaves_out_partial_edge_tiles() {
    let t = crop_cells();
    let g = grid(EdgePolicy::Drop);
    assert_eq!((g.n_cols, g.n_rows), (9, 7));
    assert!(g
        .niches
        .iter()
        .all(|n| !n.padded && n.extent_px == [256, 256]));
    let pixels = centroid_pixels();
    let want: Vec<u32> = (0..t.n_cells() as u32)
        .filter(|&i| {
            let [c, r] = pixels[i as usize];
            c < 0 || r < 0 || c >= 9 * 256 || r >= 7 * 256
        })
        .collect();
    assert_eq!(g.unassigned, want);
    assert!(!want.is_empty(), "the 96 px right strip holds cells");
    let assigned: usize = g.niches.iter().map(|n| n.cells.len()).sum();
    assert_eq!(assigned + g.unassigned.len(), t.n_cells());
}

#[test]
fn tissue_regions_tile_the_niche_grid() {
    let g = grid(EdgePolicy::Pad);
    let regions = g.tissue_regions(4).unwrap();
    assert_eq!(regions.len(), 3 * 2);
    let mut seen = vec![0u32; g.len()];
    for (i, region) in regions.iter().enumerate() {
        assert_eq!(i, region.region_row * 3 + region.region_col);
        assert_eq!((region.niches.len(), region.mask.len()), (16, 16));
        for (slot, (&niche, &present)) in region.niches.iter().zip(&region.mask).enumerate() {
            let (col, row) = (
                region.region_col * 4 + slot % 4,
                region.region_row * 4 + slot / 4,
            );
            assert_eq!(niche, g.index(col, row), "region {i} slot {slot}");
            if let Some(n) = niche {
                seen[n] += 1;
                assert_eq!(present, !g.niches[n].cells.is_empty());
            } else {
                assert!(!present);
            }
        }
    }
    assert!(seen.iter().all(|&s| s == 1));
    // The right column of regions covers niche columns 8..12 of a 10-column grid.
    assert_eq!(regions[2].niches.iter().filter(|n| n.is_none()).count(), 8);
    let present: usize = regions.iter().map(|r| r.n_present()).sum();
    assert_eq!(
        present,
        g.niches.iter().filter(|n| !n.cells.is_empty()).count()
    );
    // Region size is a parameter.
    assert_eq!(g.tissue_regions(1).unwrap().len(), 80);
    assert_eq!(g.tissue_regions(10).unwrap().len(), 1);
}

#[test]
fn bad_parameters_are_typed_errors_naming_field_and_value() {
    let t = crop_cells();
    let build = |opts: NicheOptions, centroids: &[[f32; 2]]| {
        NicheGrid::build(
            centroids,
            &t.counts[..centroids.len() * t.n_genes()],
            t.n_genes(),
            &XENIUM_CROP_FRAME,
            [2400, 1800],
            &opts,
        )
    };
    let e = build(
        NicheOptions {
            tile_px: 0,
            ..NicheOptions::default()
        },
        &t.centroids_um,
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            DataError::InvalidArgument {
                name: "tile_px",
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("`tile_px` = 0"), "{e}");
    let e = build(
        NicheOptions {
            region_niches: 0,
            ..NicheOptions::default()
        },
        &t.centroids_um,
    )
    .unwrap_err();
    assert!(e.to_string().contains("`region_niches` = 0"), "{e}");
    let e = grid(EdgePolicy::Pad).tissue_regions(0).unwrap_err();
    assert!(e.to_string().contains("`region_niches` = 0"), "{e}");

    let mut centroids = t.centroids_um.clone();
    centroids[5][1] = f32::NAN;
    let e = build(NicheOptions::default(), &centroids).unwrap_err();
    assert!(matches!(e, DataError::InvalidValue { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("centroids_um[5] (cell 5)") && msg.contains("NaN"),
        "{msg}"
    );

    let e = NicheGrid::build(
        &t.centroids_um,
        &t.counts[1..],
        t.n_genes(),
        &XENIUM_CROP_FRAME,
        [2400, 1800],
        &NicheOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(e, DataError::Shape { .. }), "{e:?}");
    let e = build(NicheOptions::default(), &t.centroids_um[..0]);
    assert!(e.is_ok());
    let e = NicheGrid::build(
        &[],
        &[],
        1,
        &XENIUM_CROP_FRAME,
        [0, 1800],
        &NicheOptions::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("`image_size` = 0x1800"), "{e}");
}

// --- spatial index -------------------------------------------------------------------------

fn brute_knn(points: &[[f32; 2]], q: [f32; 2], k: usize, skip: Option<usize>) -> Vec<u32> {
    let mut all = brute_all(points, q, skip);
    all.truncate(k);
    all.into_iter().map(|(_, i)| i).collect()
}

fn brute_radius(points: &[[f32; 2]], q: [f32; 2], r: f32, skip: Option<usize>) -> Vec<u32> {
    let r2 = f64::from(r) * f64::from(r);
    brute_all(points, q, skip)
        .into_iter()
        .filter(|&(d, _)| d <= r2)
        .map(|(_, i)| i)
        .collect()
}

fn brute_all(points: &[[f32; 2]], q: [f32; 2], skip: Option<usize>) -> Vec<(f64, u32)> {
    let mut all: Vec<(f64, u32)> = points
        .iter()
        .enumerate()
        .filter(|&(i, _)| Some(i) != skip)
        .map(|(i, &p)| (squared_distance(q, p), i as u32))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    all
}

fn ids(v: Vec<Neighbor>) -> Vec<u32> {
    v.into_iter().map(|n| n.index).collect()
}

/// Every query of `queries` (indices into `points`) in both self modes, plus free points.
fn check_against_brute_force(
    index: &SpatialIndex,
    queries: &[usize],
    ks: &[usize],
    radii: &[f32],
    free: &[[f32; 2]],
) {
    let points = index.points();
    for &i in queries {
        for self_match in [SelfMatch::Include, SelfMatch::Exclude] {
            let skip = (self_match == SelfMatch::Exclude).then_some(i);
            for &k in ks {
                let got = ids(index.k_nearest_of(i, k, self_match).unwrap());
                assert_eq!(
                    got,
                    brute_knn(points, points[i], k, skip),
                    "point {i}, k {k}"
                );
            }
            for &r in radii {
                let got = ids(index.within_radius_of(i, r, self_match).unwrap());
                assert_eq!(
                    got,
                    brute_radius(points, points[i], r, skip),
                    "point {i}, r {r}"
                );
            }
        }
    }
    for &q in free {
        for &k in ks {
            let got = ids(index.k_nearest(q, k).unwrap());
            assert_eq!(got, brute_knn(points, q, k, None), "query {q:?}, k {k}");
        }
        for &r in radii {
            let got = ids(index.within_radius(q, r).unwrap());
            assert_eq!(got, brute_radius(points, q, r, None), "query {q:?}, r {r}");
        }
    }
}

#[test]
fn neighbours_of_crop_centroids_equal_brute_force() {
    let points = &crop_cells().centroids_um;
    let all: Vec<usize> = (0..points.len()).collect();
    let free = [
        [1300.0, 400.0],
        [0.0, 0.0],
        [1062.5, 212.5],
        [5000.0, 5000.0],
        [-1e6, 3e5],
    ];
    let ks = [1, 2, 6, 15, 50, 1134, 1135, 2000];
    let radii = [0.0, 5.0, 12.5, 30.0, 100.0, 1e4];
    let auto = SpatialIndex::new(points).unwrap();
    println!(
        "crop index: {} points, bin {:.2} µm",
        auto.len(),
        auto.bin_size()
    );
    check_against_brute_force(&auto, &all, &ks, &radii, &free);
    // The bin size changes speed, never results.
    for bin in [0.5f32, 7.0, 60.0, 1e5] {
        let index = SpatialIndex::with_bin_size(points, bin).unwrap();
        check_against_brute_force(&index, &all[..200], &[1, 6, 50], &[12.5, 30.0], &free[..2]);
    }
    // Sanity on the data: typical nearest-neighbour distance of cells is a few µm.
    let d: Vec<f64> = (0..points.len())
        .map(|i| auto.k_nearest_of(i, 1, SelfMatch::Exclude).unwrap()[0].distance())
        .collect();
    let mean = d.iter().sum::<f64>() / d.len() as f64;
    println!("crop: mean nearest-neighbour distance {mean:.2} µm");
    assert!(mean > 2.0 && mean < 30.0, "{mean}");
}

#[test]
fn neighbours_of_random_points_equal_brute_force() {
    let mut rng = SplitMix64::new(20_250_117);
    // 20k uniform points, 20k clustered points, and 20k points on a coarse lattice (many ties
    // and duplicates).
    let uniform: Vec<[f32; 2]> = (0..20_000)
        .map(|_| [rng.uniform(0.0, 1000.0), rng.uniform(-50.0, 450.0)])
        .collect();
    let clustered: Vec<[f32; 2]> = (0..20_000)
        .map(|i| {
            let centre = [(i % 7) as f32 * 300.0, (i % 3) as f32 * 500.0];
            [
                centre[0] + 5.0 * rng.normal(),
                centre[1] + 5.0 * rng.normal(),
            ]
        })
        .collect();
    let lattice: Vec<[f32; 2]> = (0..20_000)
        .map(|_| [rng.below(60) as f32, rng.below(40) as f32 * 0.5])
        .collect();
    for (name, points) in [
        ("uniform", &uniform),
        ("clustered", &clustered),
        ("lattice", &lattice),
    ] {
        let index = SpatialIndex::new(points).unwrap();
        let queries: Vec<usize> = (0..150)
            .map(|_| rng.below(points.len() as u64) as usize)
            .collect();
        let free: Vec<[f32; 2]> = (0..20)
            .map(|_| [rng.uniform(-200.0, 2200.0), rng.uniform(-200.0, 1200.0)])
            .collect();
        let radii = [0.0, 0.5, 1.0, 3.0, 10.0];
        check_against_brute_force(&index, &queries, &[1, 4, 10, 64, 300], &radii, &free);
        println!(
            "{name}: {} points, bin {:.3}",
            index.len(),
            index.bin_size()
        );
    }
}
