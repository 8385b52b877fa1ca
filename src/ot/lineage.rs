//! Coarse cell lineages of reference labels: SPATIA pairs control and target states only within
//! one lineage.

/// Coarse lineage of the breast-atlas reference labels (SPATIA pairs states within a lineage).
pub fn breast_lineage(label: &str) -> String {
    match label {
        "Epithelial" | "Malignant" => "epithelial",
        "CD4Tconv/Treg" | "CD8T/CD8Tex" | "NK" => "T/NK",
        "B" | "Plasma" => "B",
        "Mono/Macro" | "DC" | "Mast" | "Neutrophils" => "myeloid",
        "Fibroblasts" | "Myofibroblasts" | "SMC" => "stromal",
        "Endothelial" => "endothelial",
        other => other,
    }
    .to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn breast_states_map_to_their_lineage_and_unknown_labels_to_themselves() {
        assert_eq!(super::breast_lineage("Malignant"), "epithelial");
        assert_eq!(super::breast_lineage("CD8T/CD8Tex"), "T/NK");
        assert_eq!(super::breast_lineage("Hepatocyte"), "Hepatocyte");
    }
}
