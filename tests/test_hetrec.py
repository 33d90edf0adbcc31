"""HetRec 2011 MovieLens-2k conversion, and the group-scoring parts it was made for: the best
partition baseline and whether names contain the tag of the group they recover."""

import datetime as dt
import json
from pathlib import Path

import pyarrow as pa
import pytest
from step_outputs import write_step_output

from eval.extraction import best_partition, evaluate_groups, name_contains_tag
from journeys import cli, io, schema
from journeys.hetrec import NON_TOPICAL, convert, fold
from journeys.inputs import InputError

UTC = dt.timezone.utc

# tags.dat is UTF-8 but for one Latin-1 value (as in the real file); tag 2 and 6 say nothing about a movie.
TAGS = ("id\tvalue\n1\tTime Travel\n2\tDVD\n3\tsci-fi\n4\tcafé\n6\tMust-See\n".encode()
        + "5\tmistério\n".encode("latin-1"))
MOVIES = ("id\ttitle\timdbID\tyear\n10\tToy story\t0114709\t1995\n20\tAmélie\t0211915\t2001\n"
          '30\t"Heroes"\t0813715\t2006\n40\tBrazil\t0088846\t1985\n50\tAlien\t0078748\t1979\n'
          "60\tNobody tagged this\t0000001\t1990\n")
GENRES = ("movieID\tgenre\n10\tAdventure\n10\tAnimation\n10\tChildren\n20\tComedy\n20\tRomance\n30\tDrama\n"
          "40\tSci-Fi\n40\tComedy\n50\tHorror\n60\tDrama\n")
DIRECTORS = ("movieID\tdirectorID\tdirectorName\n10\tjohn_lasseter\tJohn Lasseter\n20\tjean-pierre_jeunet\t"
             "Jean-Pierre Jeunet\n30\tluis_bunuel\tLuis Buñuel\n40\tterry_gilliam\tTerry Gilliam\n")
# User 1 tags movie 10 twice, the later time first; user 3 tags 2 movies (below --min_items 3). Times are
# seconds after BASE (epoch milliseconds, 2006: validation refuses implausible times such as 1970).
BASE = 1_162_160_415_000
TAGGINGS = "userID\tmovieID\ttagID\tunixTimeStamp\n" + "".join(
    f"{user}\t{movie}\t{tag}\t{BASE + round(1000 * second)}\n" for user, movie, tag, second in (
        (1, 10, 1, 5), (1, 10, 3, 2), (1, 20, 2, 3), (1, 20, 1, 3), (1, 30, 1, 4), (1, 40, 6, 6),
        (2, 10, 4, 1), (2, 20, 4, 1.5), (2, 30, 5, 1.7), (2, 40, 4, 1.8), (3, 50, 1, 1), (3, 10, 1, 1.1)))


def _hetrec(folder: Path) -> Path:
    folder.mkdir()
    (folder / "tags.dat").write_bytes(TAGS)
    (folder / "movies.dat").write_bytes(MOVIES.encode("latin-1"))
    (folder / "movie_genres.dat").write_text(GENRES)
    (folder / "movie_directors.dat").write_bytes(DIRECTORS.encode("latin-1"))
    (folder / "user_taggedmovies-timestamps.dat").write_text(TAGGINGS)
    return folder


def _at(second: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(BASE / 1000 + second, UTC)


def test_one_event_per_user_and_movie_at_the_first_tag_for_users_with_enough_movies(tmp_path):
    counts = convert(str(_hetrec(tmp_path / "src")), str(tmp_path / "out"), min_items=3)
    events = io.read_table(str(tmp_path / "out" / "events.parquet"))
    assert events.schema.equals(schema.EVENTS, check_metadata=True)
    got = [(e["user_id"], e["item_id"], e["timestamp"]) for e in events.to_pylist()]
    assert got == [("1", "10", _at(2)), ("1", "20", _at(3)), ("1", "30", _at(4)), ("1", "40", _at(6)),
                   ("2", "10", _at(1)), ("2", "20", _at(1.5)), ("2", "30", _at(1.7)), ("2", "40", _at(1.8))]
    assert set(events["event_type"].to_pylist()) == {"tag"} and set(events["weight"].to_pylist()) == {1.0}
    assert counts == {"users": 2, "events": 8, "items": 4, "group_rows": 8, "non_topical_rows_left_out": 2,
                      "tag_groups_3_plus_items": 2}


def test_items_are_the_tagged_movies_with_year_genres_and_director(tmp_path):
    convert(str(_hetrec(tmp_path / "src")), str(tmp_path / "out"), min_items=3)
    items = io.read_table(str(tmp_path / "out" / "items.parquet"))
    assert items.schema.names == schema.ITEMS.names and items.schema.metadata == schema.ITEMS.metadata
    by_id = {i["item_id"]: i for i in items.to_pylist()}
    assert sorted(by_id) == ["10", "20", "30", "40"]  # 50: only user 3 tagged it; 60: nobody
    assert by_id["20"] == {"item_id": "20", "title": "Amélie (2001)", "category": "Comedy", "text": None,
                           "tags": ["Comedy", "Romance", "Jean-Pierre Jeunet"]}
    assert by_id["30"]["title"] == '"Heroes" (2006)' and by_id["30"]["tags"] == ["Drama", "Luis Buñuel"]
    assert by_id["10"]["tags"] == ["Adventure", "Animation", "Children", "John Lasseter"]


def test_groups_keep_the_tag_text_and_leave_out_non_topical_tags(tmp_path):
    convert(str(_hetrec(tmp_path / "src")), str(tmp_path / "out"), min_items=3)
    groups = io.read_table(str(tmp_path / "out" / "groups.parquet")).to_pylist()
    assert sorted((g["user_id"], g["item_id"], g["tag"]) for g in groups) == [
        ("1", "10", "Time Travel"), ("1", "10", "sci-fi"), ("1", "20", "Time Travel"), ("1", "30", "Time Travel"),
        ("2", "10", "café"), ("2", "20", "café"), ("2", "30", "mistério"), ("2", "40", "café")]


def test_non_topical_tags_are_matched_folded():
    assert {fold(" Must-See "), fold("DVD"), fold("seen it"), fold("BD-R")} <= NON_TOPICAL
    assert not {fold("Sci-Fi"), fold("time travel"), fold("Stanley Kubrick"), fold("dark comedy")} & NON_TOPICAL


def test_a_missing_file_is_named(tmp_path):
    src = _hetrec(tmp_path / "src")
    (src / "movie_directors.dat").unlink()
    with pytest.raises(InputError, match="movie_directors.dat"):
        convert(str(src), str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()  # checked before anything is written


def test_convert_from_the_command_line(tmp_path, capsys):
    src = _hetrec(tmp_path / "src")
    assert cli.main(["convert", "hetrec-movielens", "--src", str(src), "--out", str(tmp_path / "out"),
                     "--min_items", "3"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["users"] == 2 and printed["events"] == 8 and printed["out"] == str(tmp_path / "out")
    assert cli.main(["convert", "hetrec-movielens", "--src", str(src), "--out", str(tmp_path / "all")]) == 0
    assert json.loads(capsys.readouterr().out)["users"] == 0  # nobody tagged the default 20 movies
    (src / "tags.dat").unlink()
    assert cli.main(["convert", "hetrec-movielens", "--src", str(src), "--out", str(tmp_path / "o")]) == 2
    assert "tags.dat" in capsys.readouterr().err


def test_best_partition_takes_the_largest_unassigned_group_first():
    groups = {("u", "a"): {1, 2, 3, 4}, ("u", "b"): {3, 4, 5}, ("u", "c"): {5, 6}, ("u", "d"): {1, 2},
              ("v", "x"): {7, 8}, ("v", "w"): {8, 9}}
    # u: a (4 new), then c (2 new: 5, 6) over b (1 new: 5); b and d have nothing left. v: a tie, w sorts first.
    assert best_partition(groups) == {"u": [{1, 2, 3, 4}, {5, 6}], "v": [{8, 9}, {7}]}
    histories = {"u": set(range(1, 11)), "v": {7, 8, 9}}
    report = evaluate_groups([], groups, histories, {})["baseline_best_partition"]
    # recovered at Jaccard >= 0.5: a, c, d ({1, 2} against {1, 2, 3, 4}), w, x ({7, 8} against {7}); not b (2/5)
    assert report["group_recall"] == round(5 / 6, 4) and report["journeys"] == 4


def test_name_contains_tag_uses_the_best_matching_journey_and_whole_words():
    groups = {("u", "sci fi"): {"a", "b", "c"}, ("u", "time travel"): {"d", "e", "f"},
              ("u", "nolan"): {"g", "h", "i"}, ("w", "pixar"): {"p", "q", "r"}}
    named = [("u", ["a", "b"], "Nolan sci fi"),  # matches sci fi at 2/3, but another journey matches it better
             ("u", ["a", "b", "c"], "Space operas"),
             ("u", ["d", "e"], "Time-travelling adventures"),  # "time travel" but not as whole words
             ("u", ["g", "x", "y", "z"], "Nolan films")]  # Jaccard 1/6: not a match, so not counted
    result = name_contains_tag(named, groups)
    assert result == {"matched_groups": 2, "name_contains_tag": 0.0,
                      "examples": [["sci fi", "Space operas"], ["time travel", "Time-travelling adventures"]]}
    named[1] = ("u", ["a", "b", "c"], "Classic SCI-FI!")
    assert name_contains_tag(named, groups)["name_contains_tag"] == 0.5
    assert name_contains_tag([], groups) == {"matched_groups": 0, "name_contains_tag": None, "examples": []}


def _journey(user: str, items: list[str], name: str) -> dict:
    when = dt.datetime(2020, 1, 1, tzinfo=UTC)
    return {"journey_id": f"{user}-{items[0]}", "user_id": user, "item_ids": items, "first_ts": when,
            "last_ts": when, "num_events": len(items), "num_items": len(items), "active_days": 1, "span_days": 0.0,
            "salient_terms": [], "representative_titles": [], "centroid": [0.0], "persistence": 1.0,
            "strategy": "test", "embedding_model": "test", "first_seen": when, "version": 1, "name": name,
            "naming_strategy": "keywords", "naming_model": None, "adapter": None, "template_version": None,
            "grounding": 1.0, "fell_back": False, "fallback_reason": None, "status": "new",
            "naming_decision": "named", "naming_reason": "new"}


def test_eval_extraction_scores_names_and_the_best_partition_on_converted_data(tmp_path, capsys):
    data = tmp_path / "out"
    convert(str(_hetrec(tmp_path / "src")), str(data), min_items=3)
    rows = [_journey("1", ["10", "20", "30"], "Time travel trips"), _journey("2", ["10", "20", "40", "30"], "Coffee")]
    journeys = [{k: v for k, v in r.items() if k in schema.JOURNEYS.names} for r in rows]
    write_step_output(pa.Table.from_pylist(journeys, schema=schema.JOURNEYS), tmp_path / "run" / "journeys")
    write_step_output(pa.Table.from_pylist(rows, schema=schema.NAMED_JOURNEYS), tmp_path / "run" / "named")
    assert cli.main(["eval", "extraction", "--journeys", str(tmp_path / "run" / "journeys"),
                     "--groups", str(data / "groups.parquet"), "--events", str(data / "events.parquet"),
                     "--items", str(data / "items.parquet"), "--named", str(tmp_path / "run" / "named")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["reference_groups"] == 2  # user 1's "time travel" and user 2's "café"
    assert report["baseline_best_partition"]["group_recall"] == 1.0
    assert report["baseline_best_partition"]["journeys"] == 2
    assert report["names"] == {"matched_groups": 2, "name_contains_tag": 0.5,
                               "examples": [["time travel", "Time travel trips"], ["café", "Coffee"]]}
    assert cli.main(["eval", "extraction", "--journeys", str(tmp_path / "run" / "journeys"),
                     "--truth", str(tmp_path / "truth.parquet"), "--named", str(tmp_path / "run" / "named")]) == 2
    assert "--named needs --groups" in capsys.readouterr().err
