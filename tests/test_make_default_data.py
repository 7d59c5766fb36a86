"""Tests of the default-dataset generator: layout, determinism, twins, masks, mono."""
import json

import numpy as np
import pytest
from PIL import Image

import make_default_data as mdd

SIZE = 128
TRAIN_PER_CHAR, TEST_PER_CHAR = 2, 1


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("default")
    mdd.generate(out, TRAIN_PER_CHAR, TEST_PER_CHAR, SIZE, seed=0)
    return out


def names_in(folder, suffix):
    return sorted(path.stem for path in folder.glob("*" + suffix))


def read_tags(path):
    return path.read_text("utf-8").strip().split(",")


def test_layout_counts_and_modes(dataset):
    characters = mdd.CHARACTERS
    for split, per_char in (("train", TRAIN_PER_CHAR), ("test", TEST_PER_CHAR)):
        kinds = ("color", "line", "mask") if split == "test" else ("color", "line")
        expected = sorted("{}_{:04d}".format(c["romaji"], i) for c in characters for i in range(per_char))
        for kind in kinds:
            assert names_in(dataset / split / kind, ".png") == expected
        assert names_in(dataset / split / "color", ".txt") == expected
        assert not (dataset / "train" / "mask").exists()
        for name in expected:
            modes = {"color": "RGB", "line": "L", "mask": "L"}
            for kind in kinds:
                with Image.open(dataset / split / kind / (name + ".png")) as image:
                    assert (image.mode, image.size) == (modes[kind], (SIZE, SIZE))
            romaji = name.rsplit("_", 1)[0]
            tags = read_tags(dataset / split / "color" / (name + ".txt"))
            assert tags[0] == mdd.find_character(romaji)["tag"]
            assert all(tags) and len(tags) == len(set(tags))

    description = json.loads((dataset / "characters.json").read_text("utf-8"))
    assert description["labels"] == {"background": 0, "skin": 1, "hair": 2, "eyes": 3, "clothes": 4}
    assert description["counts"]["train"] == TRAIN_PER_CHAR * len(characters)
    assert description["counts"]["test"] == TEST_PER_CHAR * len(characters)
    assert description["mono_tags"] == ["モノクロ", "ノート"]
    assert (description["size"], description["seed"]) == (SIZE, 0)
    by_tag = {c["tag"]: c for c in description["characters"]}
    assert len(by_tag) >= 8 and len({c["franchise"] for c in by_tag.values()}) >= 4
    assert by_tag["響"]["twin"] == "暁" and by_tag["暁"]["twin"] == "響"
    for entry in by_tag.values():
        assert set(entry["colors"]) == {"hair", "eyes", "clothes", "skin"}
        assert entry["romaji"].isascii()


def test_same_arguments_give_identical_files(dataset, tmp_path):
    mdd.generate(tmp_path, TRAIN_PER_CHAR, TEST_PER_CHAR, SIZE, seed=0)
    first = sorted(p.relative_to(dataset) for p in dataset.rglob("*") if p.is_file())
    second = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert first == second
    for relative in first:
        assert (dataset / relative).read_bytes() == (tmp_path / relative).read_bytes(), relative


def test_rerun_with_fewer_images_leaves_no_stale_files(tmp_path):
    mdd.generate(tmp_path, 2, 1, 64, seed=1)
    mdd.generate(tmp_path, 1, 1, 64, seed=1)
    assert len(list((tmp_path / "train" / "color").glob("*.png"))) == len(mdd.CHARACTERS)


@pytest.mark.parametrize("first, second", [
    ("響", "暁"), ("アルトリア・ペンドラゴン", "アルトリア・ペンドラゴン〔オルタ〕")])
def test_twins_share_line_art_but_not_colours(first, second):
    for seed in range(3):
        params = mdd.sample_params(np.random.default_rng(seed), SIZE)
        colour_a, line_a, mask_a = mdd.render(first, params, SIZE)
        colour_b, line_b, mask_b = mdd.render(second, params, SIZE)
        np.testing.assert_array_equal(line_a, line_b)
        np.testing.assert_array_equal(mask_a, mask_b)
        hair = mask_a == mdd.LABELS["hair"]
        difference = np.abs(colour_a.astype(int) - colour_b.astype(int))[hair].mean()
        assert difference > 40


def test_different_shapes_give_different_line_art():
    params = mdd.sample_params(np.random.default_rng(0), SIZE)
    lines = {c["romaji"]: mdd.render(c, params, SIZE)[1] < 128 for c in mdd.CHARACTERS}
    for a, b in (("miku", "rin"), ("reimu", "marisa"), ("hibiki", "artoria"), ("hibiki", "miku")):
        assert (lines[a] != lines[b]).mean() > 0.02, (a, b)


def test_masks_cover_every_region_and_match_colours():
    params = mdd.sample_params(np.random.default_rng(11), 256)
    for character in mdd.CHARACTERS:
        colour, line, mask = mdd.render(character, params, 256)
        for label in ("skin", "hair", "eyes", "clothes"):
            assert (mask == mdd.LABELS[label]).sum() > 0, (character["romaji"], label)
        assert (mask == mdd.LABELS["eyes"]).sum() >= 60
        hair_mean = colour[mask == mdd.LABELS["hair"]].mean(axis=0)
        np.testing.assert_allclose(hair_mean, character["colors"]["hair"], atol=20)
        skin_mean = colour[mask == mdd.LABELS["skin"]].mean(axis=0)
        np.testing.assert_allclose(skin_mean, mdd.SKIN, atol=12)
        assert (line[mask > 0] > 200).all()  # labelled pixels are free of outline ink


def test_monochrome_images_are_grey_and_tagged(dataset):
    mono_count = 0
    for split in ("train", "test"):
        for tags_path in (dataset / split / "color").glob("*.txt"):
            tags = read_tags(tags_path)
            colour = np.asarray(Image.open(tags_path.with_suffix(".png")))
            grey = (colour[..., 0] == colour[..., 1]).all() and (colour[..., 1] == colour[..., 2]).all()
            is_mono = bool(set(tags) & set(mdd.MONO_TAGS))
            assert grey == is_mono, tags_path.name
            mono_count += is_mono
    assert mono_count >= 2


def test_note_pictures_have_ruled_lines_in_both_images():
    params = mdd.sample_params(np.random.default_rng(2), SIZE)
    colour, line, _ = mdd.render("miku", params, SIZE, tone="note")
    plain_colour, plain_line, _ = mdd.render("miku", params, SIZE, tone="mono")
    assert ((line > 150) & (line < 250)).sum() > SIZE
    assert (colour != plain_colour).any() and (plain_line >= 250).sum() > (line >= 250).sum()


def test_tags_follow_the_schedule():
    schedule = mdd.tone_schedule(np.random.default_rng(0), 40, 8)
    mono = [i % 8 for i, (tone, _) in enumerate(schedule) if tone != "color"]
    assert len(mono) == 48 and all(mono.count(c) == 6 for c in range(8))
    assert all(extra for tone, extra in schedule if tone != "color")
    assert sum(tone != "color" for tone, _ in mdd.tone_schedule(np.random.default_rng(0), 1, 8)) == 1
    tags = mdd.make_tags(mdd.find_character("miku"), ["ノート"], np.random.default_rng(3))
    assert tags[0] == "初音ミク" and "ボーカロイド" in tags and "ノート" in tags
