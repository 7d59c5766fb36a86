"""Tags -> vector -> plane."""
import warnings

import numpy as np
import pytest

import tag_vectorizer
from plane_layout import lay_out
from tag_vectorizer import TagVectorizer, UnknownTagWarning

TAG_LISTS = [['響', '艦これ', '銀髪'], ['暁', '艦これ', '紺髪'], ['初音ミク', 'ボーカロイド', 'ツインテール'],
             ['博麗霊夢', '東方', '黒髪'], ['アルトリア・ペンドラゴン〔オルタ〕', 'Fate/GrandOrder']] * 8


@pytest.fixture(scope='module')
def vectorizer():
    return TagVectorizer.train(TAG_LISTS, dim=16, epochs=20, seed=0)


def test_training_is_deterministic():
    a = TagVectorizer.train(TAG_LISTS, dim=16, epochs=5, seed=3)
    b = TagVectorizer.train(TAG_LISTS, dim=16, epochs=5, seed=3)
    np.testing.assert_array_equal(a.kv.vectors, b.kv.vectors)


def test_plane_is_deterministic_bounded_and_laid_out_on_a_grid(vectorizer):
    vector = vectorizer.vector(['響'])
    p = lay_out(vector, 128)
    np.testing.assert_array_equal(p, lay_out(vectorizer.vector(['響']), 128))
    assert p.shape == (128, 128) and p.dtype == np.float32
    assert p.min() >= -1 and p.max() <= 1
    # 16 values -> a 4x4 grid of 32x32 cells, row by row.
    np.testing.assert_array_equal(p[::32, ::32].ravel(), vector)
    assert np.all(p[:32, :32] == vector[0])


def test_plane_pads_a_non_square_vector_with_zeros():
    p = lay_out(np.arange(1, 6, dtype=np.float32) / 10, 30)  # 5 values -> 3x3 grid of 10 px
    np.testing.assert_allclose(p[::10, ::10], [[.1, .2, .3], [.4, .5, 0], [0, 0, 0]])


def test_different_tags_give_different_planes(vectorizer):
    hibiki, akatsuki = vectorizer.vector(['響']), vectorizer.vector(['暁'])
    assert np.abs(hibiki - akatsuki).mean() > 0.05
    assert not np.array_equal(lay_out(hibiki, 64), lay_out(akatsuki, 64))


def test_messages_show_a_tag_s_control_characters_escaped():
    assert tag_vectorizer.shorten('響\n\x1b[31m赤') == '響\\n\\x1b[31m赤'
    assert tag_vectorizer.shorten('x' * 50 + '\n') == 'x' * 40 + '… (51 characters)'


def test_no_tag_is_the_zero_plane(vectorizer):
    assert not lay_out(vectorizer.vector([]), 64).any()


def test_unknown_tag_warns_and_names_the_tag(vectorizer):
    with pytest.warns(UnknownTagWarning, match='存在しないタグ'):
        vector = vectorizer.vector(['存在しないタグ', '響'])
    np.testing.assert_array_equal(vector, vectorizer.vector(['響']))
    assert vectorizer.unknown(['存在しないタグ', '響']) == ['存在しないタグ']
    with pytest.warns(UnknownTagWarning):
        assert not vectorizer.vector(['存在しないタグ']).any()


def test_unknown_tag_falls_back_to_its_janome_words(vectorizer):
    # 'オルタ' is a word of the trained tag 'アルトリア・ペンドラゴン〔オルタ〕'.
    assert 'オルタ' in vectorizer.kv.key_to_index
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        vector = vectorizer.vector(['オルタちゃん'])
    assert vector.any()


def test_tokens_drop_particles_and_symbols():
    assert tag_vectorizer.tokens_of('銀髪の女の子') == ('銀髪', '女の子')


@pytest.mark.parametrize('binary', [False, True])
def test_vectors_load_in_word2vec_formats(vectorizer, tmp_path, binary):
    path = tmp_path / ('v.bin' if binary else 'v.txt')
    vectorizer.kv.save_word2vec_format(str(path), binary=binary)
    loaded = TagVectorizer.load(path)
    np.testing.assert_allclose(loaded.vector(['響', '艦これ']), vectorizer.vector(['響', '艦これ']),
                               atol=1e-5)


def test_save_and_load_round_trip(vectorizer, tmp_path):
    vectorizer.save(tmp_path / 'tag_vectors.txt')
    loaded = TagVectorizer.load(tmp_path / 'tag_vectors.txt')
    assert len(loaded.kv) == len(vectorizer.kv)
    np.testing.assert_allclose(loaded.vector(['暁']), vectorizer.vector(['暁']), atol=1e-5)


def test_one_hot_keeps_every_tag_apart(tmp_path):
    onehot = TagVectorizer.one_hot(TAG_LISTS)
    assert onehot.dim == len({t for tags in TAG_LISTS for t in tags})
    hibiki, akatsuki = onehot.vector(['響']), onehot.vector(['暁'])
    assert np.argmax(hibiki) != np.argmax(akatsuki) and hibiki.max() == 1.0
    onehot.save(tmp_path / 'v.txt')
    np.testing.assert_allclose(TagVectorizer.load(tmp_path / 'v.txt').vector(['響']), hibiki, atol=1e-5)


def test_sentences_add_the_words_of_a_tag_but_not_other_tags():
    whole = frozenset(['アルトリア・ペンドラゴン', 'アルトリア・ペンドラゴン〔オルタ〕'])
    words = tag_vectorizer.sentence_of(['アルトリア・ペンドラゴン〔オルタ〕', 'FGO'], whole)
    # The twin's own tag must not enter the other twin's context (it would mix the two).
    assert words == ['アルトリア・ペンドラゴン〔オルタ〕', 'FGO', 'オルタ']
