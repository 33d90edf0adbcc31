"""Collaborative item vectors from a ratings history, to try the extraction's embedding block.

A team's recommender has its own item vectors (two-tower, co-watch, item2vec); a public data set
has none. This stands in for them: a truncated SVD of the user-item matrix (each user's ratings
centred on their own mean, so that a liked and a disliked film are not alike just because both were
rated), items as rows of V scaled by the square root of the singular values. The vectors go to a
table of ``item_id`` and ``embedding`` that ``journeys extract --item_vectors`` joins to the items.

    python benchmarks/svd_item_vectors.py --events ml/events.parquet --out ml/item_vectors.parquet
    python benchmarks/svd_item_vectors.py --events ml/events.parquet --out ml/vectors-heldout.parquet \\
        --leave_out ml/user_tags.parquet   # learned without the users whose tags score the journeys

Deterministic: the same input gives the same vectors (a fixed random state for the solver).
"""

from __future__ import annotations

import argparse
import sys


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Item vectors from a truncated SVD of the user-item ratings.")
    parser.add_argument("--events", required=True, help="events with user_id, item_id and weight (the rating)")
    parser.add_argument("--out", required=True, help="Parquet file of item_id, embedding to write")
    parser.add_argument("--dimension", type=int, default=64, help="vector length (default: 64)")
    parser.add_argument("--leave_out", default=None,
                        help="a table with user_id (e.g. user_tags.parquet): those users' events are not used")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    import numpy as np
    import pyarrow as pa
    from scipy.sparse import csr_matrix
    from sklearn.decomposition import TruncatedSVD

    from journeys import io

    events = io.read_table(args.events, columns=["user_id", "item_id", "weight"]).to_pylist()
    left_out = set()
    if args.leave_out:
        left_out = {str(u) for u in io.read_table(args.leave_out, columns=["user_id"])["user_id"].to_pylist()}
    rows = [e for e in events if str(e["user_id"]) not in left_out]
    users = sorted({str(e["user_id"]) for e in rows})
    items = sorted({str(e["item_id"]) for e in rows})
    user_index, item_index = {u: i for i, u in enumerate(users)}, {t: i for i, t in enumerate(items)}
    ratings = np.array([e["weight"] if e["weight"] is not None else 1.0 for e in rows], dtype=np.float64)
    user_of = np.array([user_index[str(e["user_id"])] for e in rows])
    means = np.bincount(user_of, ratings, len(users)) / np.maximum(np.bincount(user_of, minlength=len(users)), 1)
    matrix = csr_matrix((ratings - means[user_of], (user_of, [item_index[str(e["item_id"])] for e in rows])),
                        shape=(len(users), len(items)))
    svd = TruncatedSVD(n_components=args.dimension, random_state=0, algorithm="arpack")
    svd.fit(matrix)
    vectors = (svd.components_.T * np.sqrt(svd.singular_values_)).astype(np.float32)
    # Items whose every rating equals its user's mean have no direction; they get no vector (and
    # go to the dead letters as missing_vector when the embedding block is used).
    keep = np.linalg.norm(vectors, axis=1) > 0
    table = pa.table({"item_id": [t for t, k in zip(items, keep) if k],
                      "embedding": [v.tolist() for v, k in zip(vectors, keep) if k]})
    io.write_table(table, args.out)
    print(f"{table.num_rows} item vectors of {args.dimension} from {len(rows)} ratings by {len(users)} users "
          f"({len(left_out)} users left out) -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
