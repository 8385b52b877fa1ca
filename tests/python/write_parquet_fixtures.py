"""Parquet / gzip fixtures of the real Xenium crop, for tests/data_parquet.rs.

Usage: write_parquet_fixtures.py TRANSCRIPTS_CSV CELLS_CSV DIR

Reads the crop's transcripts CSV with pyarrow (all columns kept) and the cells.csv written by
the Rust test (`write_cells_csv`), and writes into DIR:

- transcripts_snappy.parquet   as read (cell_id int64, overlaps_nucleus int64), snappy
- transcripts_zstd.parquet     cell_id as string, x/y/z/qv as float32, zstd, row groups of
                               50,000 rows (several row groups and pages)
- transcripts_binary.parquet   cell_id and feature_name as binary, gzip
- transcripts_bool.parquet     overlaps_nucleus as bool, cell_id string, lz4
- transcripts_xoa2.parquet     adds Xenium 2 columns is_gene (False for EPCAM) and
                               codeword_category ("negative_control_probe" for VWF, else
                               "predesigned_gene")
- transcripts.csv.gz           the CSV bytes gzipped
- no_feature_name.parquet      feature_name dropped
- x_as_string.parquet          x_location as string
- null_qv.parquet              the first 10 rows, qv null in row 3
- cells_string.parquet         cell_id string, centroids float32, uint32 transcript_counts,
                               cell_area, nucleus_area (null for the first cell)
- cells_binary.parquet         cell_id binary, centroids double
- expected.json                reference counts computed here (see `reference`)
"""
import gzip
import json
import os
import sys

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

CONTROL_PREFIXES = (
    "NegControlProbe_",
    "NegControlCodeword_",
    "BLANK_",
    "Unassigned",
    "antisense_",
    "DeprecatedCodeword",
    "Intergenic",
)


def replace(table, name, array):
    return table.set_column(table.schema.get_field_index(name), name, array)


def reference(t, min_qv, drop_genes=()):
    """Kept transcripts (qv >= min_qv, gene, not in drop_genes) and those assigned to a cell."""
    qv = t.column("qv").to_pylist()
    feat = t.column("feature_name").to_pylist()
    cell = [str(c) for c in t.column("cell_id").to_pylist()]
    kept = assigned = 0
    cells, genes = set(), set()
    for q, f, c in zip(qv, feat, cell):
        if q < min_qv or f.startswith(CONTROL_PREFIXES) or f in drop_genes:
            continue
        kept += 1
        genes.add(f)
        if c not in ("-1", "UNASSIGNED", ""):
            assigned += 1
            cells.add(c)
    return {"kept": kept, "assigned": assigned, "cells": len(cells), "genes": len(genes)}


def main():
    src, cells_csv, out = sys.argv[1], sys.argv[2], sys.argv[3]
    t = pacsv.read_csv(src)
    # The CSV's first column is an unnamed pandas index; parquet wants a name.
    names = [n if n else "index" for n in t.column_names]
    t = t.rename_columns(names)
    w = lambda table, name, **kw: pq.write_table(table, os.path.join(out, name), **kw)

    w(t, "transcripts_snappy.parquet", compression="snappy")

    s = replace(t, "cell_id", pc.cast(t.column("cell_id"), pa.string()))
    f32 = s
    for c in ("x_location", "y_location", "z_location", "qv"):
        f32 = replace(f32, c, pc.cast(f32.column(c), pa.float32()))
    w(f32, "transcripts_zstd.parquet", compression="zstd", row_group_size=50_000,
      data_page_size=64 * 1024)

    b = replace(s, "cell_id", pc.cast(s.column("cell_id"), pa.binary()))
    b = replace(b, "feature_name", pc.cast(b.column("feature_name"), pa.binary()))
    w(b, "transcripts_binary.parquet", compression="gzip")

    bo = replace(s, "overlaps_nucleus", pc.equal(s.column("overlaps_nucleus"), 1))
    w(bo, "transcripts_bool.parquet", compression="lz4")

    feat = s.column("feature_name")
    x2 = s.append_column("is_gene", pc.not_equal(feat, "EPCAM"))
    category = pc.if_else(pc.equal(feat, "VWF"), "negative_control_probe", "predesigned_gene")
    x2 = x2.append_column("codeword_category", category)
    w(x2, "transcripts_xoa2.parquet", compression="zstd")

    with open(src, "rb") as fin, gzip.open(os.path.join(out, "transcripts.csv.gz"), "wb") as fout:
        fout.write(fin.read())

    w(s.drop_columns(["feature_name"]), "no_feature_name.parquet")
    w(replace(s, "x_location", pc.cast(s.column("x_location"), pa.string())),
      "x_as_string.parquet")
    head = s.slice(0, 10)
    qv = head.column("qv").to_pylist()
    qv[2] = None
    w(replace(head, "qv", pa.array(qv, pa.float64())), "null_qv.parquet")

    cells = pacsv.read_csv(cells_csv, convert_options=pacsv.ConvertOptions(
        column_types={"cell_id": pa.string()}))
    n = cells.num_rows
    cs = replace(cells, "x_centroid", pc.cast(cells.column("x_centroid"), pa.float32()))
    cs = replace(cs, "y_centroid", pc.cast(cells.column("y_centroid"), pa.float32()))
    cs = replace(cs, "transcript_counts",
                 pc.cast(cells.column("transcript_counts"), pa.uint32()))
    cs = cs.append_column("cell_area", pa.array([10.0 + i for i in range(n)], pa.float64()))
    cs = cs.append_column("nucleus_area",
                          pa.array([None] + [5.0 + i for i in range(1, n)], pa.float32()))
    w(cs, "cells_string.parquet", compression="snappy")
    cb = replace(cells, "cell_id", pc.cast(cells.column("cell_id"), pa.binary()))
    w(cb, "cells_binary.parquet", compression="zstd")

    expected = {
        "qv20": reference(t, 20.0),
        "qv30": reference(t, 30.0),
        "xoa2": reference(t, 20.0, drop_genes=("EPCAM", "VWF")),
        "rows": t.num_rows,
    }
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(expected, f)


if __name__ == "__main__":
    main()
