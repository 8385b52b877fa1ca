//! Colours: a categorical palette for clusters / cell types and a sequential map for heatmaps.

use super::canvas::Rgb;

/// 20 categorical colours: matplotlib's `tab20`, reordered so the saturated `tab10` colours
/// come first, then their pale partners, with the two greys last (grey dots vanish on the
/// DAPI background).
pub const CATEGORICAL: [Rgb; 20] = [
    Rgb(31, 119, 180),
    Rgb(255, 127, 14),
    Rgb(44, 160, 44),
    Rgb(214, 39, 40),
    Rgb(148, 103, 189),
    Rgb(140, 86, 75),
    Rgb(227, 119, 194),
    Rgb(188, 189, 34),
    Rgb(23, 190, 207),
    Rgb(174, 199, 232),
    Rgb(255, 187, 120),
    Rgb(152, 223, 138),
    Rgb(255, 152, 150),
    Rgb(197, 176, 213),
    Rgb(196, 156, 148),
    Rgb(247, 182, 210),
    Rgb(219, 219, 141),
    Rgb(158, 218, 229),
    Rgb(127, 127, 127),
    Rgb(199, 199, 199),
];

/// Extra colours after the first 20 (Glasbey-style, high contrast to the above).
const EXTRA: [Rgb; 12] = [
    Rgb(0, 0, 128),
    Rgb(128, 0, 0),
    Rgb(0, 100, 0),
    Rgb(255, 215, 0),
    Rgb(75, 0, 130),
    Rgb(0, 128, 128),
    Rgb(255, 0, 255),
    Rgb(128, 128, 0),
    Rgb(0, 255, 127),
    Rgb(70, 130, 180),
    Rgb(210, 105, 30),
    Rgb(0, 0, 0),
];

/// Colour of category `i`: the 20 [`CATEGORICAL`] colours, then 12 more, then repeating.
pub fn category_color(i: usize) -> Rgb {
    let n = CATEGORICAL.len() + EXTRA.len();
    let i = i % n;
    if i < CATEGORICAL.len() {
        CATEGORICAL[i]
    } else {
        EXTRA[i - CATEGORICAL.len()]
    }
}

/// Anchor colours of viridis at t = 0, 0.125, ..., 1 (matplotlib values).
const VIRIDIS: [Rgb; 9] = [
    Rgb(68, 1, 84),
    Rgb(71, 44, 122),
    Rgb(59, 81, 139),
    Rgb(44, 113, 142),
    Rgb(33, 144, 141),
    Rgb(39, 173, 129),
    Rgb(92, 200, 99),
    Rgb(170, 220, 50),
    Rgb(253, 231, 37),
];

/// Viridis colour at `t` in `[0, 1]` (clamped; NaN gives [`Rgb::GREY`]), linearly
/// interpolated between 9 anchors.
pub fn viridis(t: f32) -> Rgb {
    if t.is_nan() {
        return Rgb::GREY;
    }
    let x = t.clamp(0.0, 1.0) * (VIRIDIS.len() - 1) as f32;
    let i = (x.floor() as usize).min(VIRIDIS.len() - 2);
    let f = x - i as f32;
    let (a, b) = (VIRIDIS[i], VIRIDIS[i + 1]);
    let mix = |p: u8, q: u8| (f32::from(p) + (f32::from(q) - f32::from(p)) * f).round() as u8;
    Rgb(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}
