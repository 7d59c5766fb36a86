"""Turns an image's text tags into the fourth input plane: tags -> vector -> plane.

The post vectorises an image's pixiv tags and spreads the vector over a 256x256 plane
beside the drawing (its author notes that the plane is "stretched a lot" and may be
crushed by the CNN). Here, in one place:

1. Vectors: a gensim ``Word2Vec`` trained on the training set's tag lists (one list per
   image; a whole tag is one word, and a tag of several words also contributes its
   janome tokens), or pretrained vectors in word2vec text/binary format (``--vectors``),
   or, as an ablation, one-hot vectors (one axis per tag).
2. A tag set's vector: the mean of its tags' vectors. A tag missing from the vocabulary
   falls back to the mean of its known janome tokens; a tag with none is left out with
   an ``UnknownTagWarning`` naming it. No tags at all gives the zero vector: the
   conventional pix2pix of the post's Fig. 5.
3. Standardising: the vector minus the vocabulary's mean, whitened (ZCA) with the
   vocabulary's covariance, divided by its own root mean square and clipped to [-1, 1].
   Word2vec vectors of one corpus share a large common component and correlated axes
   (twins that share every neighbour come out alike); whitening leaves what tells tags
   apart, and the RMS scaling gives one tag and a set of ten the same
   full-range plane. On the default data this takes the twins 響 and 暁 from near-equal
   vectors to near-orthogonal ones (docs/design.md; evaluate.py reports both for every
   model).
4. The plane (``tag_plane``): the vector laid out row by row on the smallest square
   grid that holds it (zero-padded), enlarged by nearest neighbour to the image size.
   16 values give a 4x4 grid of 64x64-pixel cells at 256x256. No vectorizer (a
   ``--no-tag`` model) or no tag gives the zero plane.

That is the post's layout, ``mean``. The ``slots`` layout (``--tag-design film``) keeps
the tags apart instead of averaging them: slot k of the plane holds the k-th tag's own
standardised vector (steps 1 and 3 on that tag alone), up to ``SLOTS`` tags, 16 x 16
values on a 16x16 grid. Averaged with 3-6 other tags, モノクロ moves a set's vector little
(docs/design.md); in its own slot it is all there.
The network reads the plane back at its cell centres (plane_layout.read_cells).
"""
import collections
import functools
import os
import warnings
import zlib

import numpy as np

import atomic
import plane_layout

DEFAULT_DIM = 16
LAYOUTS = ('mean', 'slots')
# Tags a slots plane carries; a set with more keeps its first SLOTS (with a warning).
SLOTS = 16
# Distinct tag sets whose vectors are kept (tag dropout makes many subsets, a server
# meets endless ones); each is a few hundred bytes, so the cache stays under 20 MB.
SET_CACHE_SIZE = 65536
# Characters of a tag that messages show (a 5000-character tag is not printed whole).
SHOWN_TAG_CHARS = 40
TEXT_NUMBER_BYTES = frozenset(b'0123456789.+-eE \t\rnaifNAIF')


class UnknownTagWarning(UserWarning):
    """A tag (and every word of it) is missing from the vectors' vocabulary."""


class DroppedTagsWarning(UserWarning):
    """A tag set holds more tags than a slots plane has slots: the last are left out."""


class VectorsError(ValueError):
    """A word-vectors file is missing or damaged; the message is one line naming it."""


def shorten(tag, limit=SHOWN_TAG_CHARS):
    """A tag as messages show it: a long one cut, with its length; a character that is not
    printable (a newline, a terminal's escape) written as its escape sequence."""
    shown = tag if len(tag) <= limit else '{}… ({} characters)'.format(tag[:limit], len(tag))
    return ''.join(c if c.isprintable() else repr(c)[1:-1] for c in shown)


def is_binary_word2vec(head):
    """Whether the first bytes of a word2vec file are of the binary format: there the
    first vector, after "COUNT DIM\nWORD ", is raw float32 bytes, in the text format
    decimal numbers."""
    first_vector = head.partition(b'\n')[2].partition(b' ')[2].partition(b'\n')[0][:64]
    return any(byte not in TEXT_NUMBER_BYTES for byte in first_vector)


def _stable_hash(text):
    # gensim seeds each word's initial vector with hash(word + seed); Python's str hash
    # changes per process, which would make training non-reproducible.
    return zlib.crc32(text.encode('utf-8'))


_tokenizer = None


@functools.lru_cache(maxsize=65536)
def tokens_of(text):
    """The content words of a tag (or free text) by janome: nouns, verbs, adjectives...
    (cached: a corpus repeats its tags on every image)."""
    global _tokenizer
    if _tokenizer is None:
        from janome.tokenizer import Tokenizer
        _tokenizer = Tokenizer()
    skipped = ('記号', '助詞', '助動詞')
    return tuple(t.surface for t in _tokenizer.tokenize(text)
                 if t.part_of_speech.split(',')[0] not in skipped)


def sentence_of(tags, whole_tags=frozenset()):
    """One training sentence for word2vec: the tags, plus the words of multi-word tags.
    A word that is itself a tag elsewhere (アルトリア・ペンドラゴン in
    アルトリア・ペンドラゴン〔オルタ〕) is left out: its own images give its vector, and
    adding it here would mix the two characters' contexts."""
    words = list(tags)
    for tag in tags:
        parts = tokens_of(tag)
        if len(parts) > 1 or (parts and parts[0] != tag):
            words.extend(part for part in parts if part not in whole_tags)
    return words


class TagVectorizer:
    """Maps tag lists to standardised vectors and to the values of their tag plane, in
    the ``layout`` the model was trained with ('mean': the post's, or 'slots')."""

    def __init__(self, keyed_vectors, layout='mean', slots=SLOTS):
        self.kv = keyed_vectors
        self.mean, self.whitening = whitening_of(keyed_vectors.vectors)
        self._tag_cache = {}
        self.set_layout(layout, slots)

    @property
    def dim(self):
        return self.kv.vector_size

    def set_layout(self, layout, slots=SLOTS):
        """Lays tag sets out as ``layout`` from now on ('mean' or 'slots')."""
        if layout not in LAYOUTS:
            raise ValueError('layout must be one of {}, not {!r}'.format(LAYOUTS, layout))
        self.layout, self.slots = layout, slots
        self._set_cache = {}

    @property
    def plane_values(self):
        """How many values a tag plane carries: one vector, or one per slot."""
        return self.dim * (self.slots if self.layout == 'slots' else 1)

    @classmethod
    def train(cls, tag_lists, dim=DEFAULT_DIM, epochs=300, seed=0):
        """Trains word2vec (skip-gram, window over the whole list) on one list per image."""
        from gensim.models import Word2Vec
        whole_tags = frozenset(tag for tags in tag_lists for tag in tags)
        sentences = [sentence_of(tags, whole_tags) for tags in tag_lists if tags]
        if not sentences:
            raise ValueError('no tags to train word vectors on')
        # Tags are an unordered set: a window as long as the longest list makes every tag
        # of an image the context of every other.
        window = max(len(s) for s in sentences)
        model = Word2Vec(sentences, vector_size=dim, window=window, min_count=1, sg=1,
                         negative=5, epochs=epochs, seed=seed, workers=1,
                         hashfxn=_stable_hash, shrink_windows=False)
        return cls(model.wv)

    @classmethod
    def one_hot(cls, tag_lists, max_tags=256):
        """The ablation of the word2vec encoding: one axis per tag (the max_tags most
        frequent), so every two tags are equally far apart, whatever their neighbours."""
        from gensim.models import KeyedVectors
        counts = collections.Counter(tag for tags in tag_lists for tag in tags)
        if not counts:
            raise ValueError('no tags to build a one-hot vocabulary from')
        vocabulary = sorted(counts, key=lambda tag: (-counts[tag], tag))[:max_tags]
        kv = KeyedVectors(len(vocabulary))
        kv.add_vectors(vocabulary, np.eye(len(vocabulary), dtype=np.float32))
        return cls(kv)

    @classmethod
    def load(cls, path, layout='mean', slots=SLOTS):
        """Loads vectors in word2vec format, binary or text (told apart by the bytes of
        the first vector). VectorsError names the file and what is wrong with it."""
        from gensim.models import KeyedVectors
        binary = False
        try:
            with open(path, 'rb') as f:
                binary = is_binary_word2vec(f.read(4096))
            kv = KeyedVectors.load_word2vec_format(str(path), binary=binary)
        except FileNotFoundError:
            raise VectorsError('{}: no such file'.format(path)) from None
        except (OSError, ValueError, EOFError) as error:  # UnicodeDecodeError is a ValueError
            raise VectorsError('{}: not a complete word2vec file (read as {}: {})'.format(
                path, 'binary' if binary else 'text', error)) from None
        if len(kv) == 0:
            raise VectorsError('{}: holds no vectors'.format(path))
        if len(kv.key_to_index) != len(kv.index_to_key):  # gensim keeps a row for each repeat
            raise VectorsError('{}: holds {} words more than once'.format(
                path, len(kv.index_to_key) - len(kv.key_to_index)))
        if not np.isfinite(kv.vectors).all():
            raise VectorsError('{}: holds values that are not finite numbers'.format(path))
        return cls(kv, layout, slots)

    def save(self, path):
        """Saves the vectors in word2vec text format (loadable again with --vectors),
        replacing the file whole (atomic.write_file)."""
        atomic.write_file(path, lambda temp: self.kv.save_word2vec_format(temp, binary=False))

    def tag_vector(self, tag):
        """The raw vector of one tag, its janome words' mean as a fallback, or None."""
        if tag in self._tag_cache:
            return self._tag_cache[tag]
        if tag in self.kv.key_to_index:
            vector = self.kv[tag]
        else:
            known = [w for w in tokens_of(tag) if w in self.kv.key_to_index]
            vector = np.mean([self.kv[w] for w in known], axis=0) if known else None
        if vector is not None:  # unknown tags are not kept: a server meets endless new ones
            self._tag_cache[tag] = vector
        return vector

    def unknown(self, tags):
        """The tags that have no vector at all, even through their words."""
        return [tag for tag in tags if self.tag_vector(tag) is None]

    def known_in_part(self, tags):
        """(tag, its known words, its unknown words) for each tag not in the vocabulary
        whose vector comes from some of its words only (赤い服: 服 known, 赤い not)."""
        parts = []
        for tag in tags:
            if tag in self.kv.key_to_index:
                continue
            words = tokens_of(tag)
            known = [w for w in words if w in self.kv.key_to_index]
            if known and len(known) < len(words):
                parts.append((tag, known, [w for w in words if w not in self.kv.key_to_index]))
        return parts

    def vector(self, tags):
        """The values of a tag set's plane, in [-1, 1]: the standardised mean vector
        ('mean'; zeros for no known tag) or each known tag's standardised vector in its
        own slot ('slots'). Computed once per distinct set (unknown tags are warned about
        that once)."""
        key = tuple(tags)
        vector = self._set_cache.get(key)
        if vector is None:
            while len(self._set_cache) >= SET_CACHE_SIZE:
                del self._set_cache[next(iter(self._set_cache))]  # the oldest
            vectors = self._known_vectors(tags)
            if self.layout == 'slots':
                vector = self._slots(vectors)
            else:
                vector = (self.standardised(np.mean(vectors, axis=0)) if vectors
                          else np.zeros(self.dim, np.float32))
            self._set_cache[key] = vector
        return vector

    def _known_vectors(self, tags):
        vectors = []
        for tag in tags:
            vector = self.tag_vector(tag)
            if vector is None:
                warnings.warn('unknown tag {!r}: neither it nor any of its words is in the '
                              'vocabulary; it is left out'.format(shorten(tag)), UnknownTagWarning)
            else:
                vectors.append(vector)
        return vectors

    def _slots(self, vectors):
        if len(vectors) > self.slots:
            warnings.warn('{} tags, the plane has {} slots: the last {} are left out'.format(
                len(vectors), self.slots, len(vectors) - self.slots), DroppedTagsWarning)
        values = np.zeros((self.slots, self.dim), np.float32)
        for slot, vector in enumerate(vectors[:self.slots]):
            values[slot] = self.standardised(vector)
        return values.ravel()

    def standardised(self, vector):
        """A raw vector minus the vocabulary's mean, whitened, divided by its RMS and
        clipped to [-1, 1] (zeros for the vocabulary's mean itself)."""
        white = (vector - self.mean) @ self.whitening
        rms = np.sqrt(np.mean(white ** 2))
        if rms == 0:
            return np.zeros(self.dim, np.float32)
        return np.clip(white / rms, -1.0, 1.0).astype(np.float32)


def for_training(tag_lists, encoding='word2vec', dim=DEFAULT_DIM, seed=0, vectors=None, resumed=None,
                 reads=None):
    """The tag vectors a training run learns with: a resumed run's own (``resumed``, its
    tag_vectors.txt, when it exists: the planes its snapshot learnt), pretrained
    ``vectors``, one-hot vectors (``encoding`` 'onehot') or word2vec trained on the tag
    lists (the post's). None when no list holds a tag. VectorsError when the vectors are
    not of the size the network ``reads`` (the film design's)."""
    if resumed and os.path.exists(resumed):
        vectorizer = TagVectorizer.load(resumed)
    elif not any(tag_lists):
        return None
    elif vectors:
        vectorizer = TagVectorizer.load(vectors)
    elif encoding == 'onehot':
        vectorizer = TagVectorizer.one_hot(tag_lists)
    else:
        vectorizer = TagVectorizer.train(tag_lists, dim=dim, seed=seed)
    if reads is not None and vectorizer.dim != reads:
        raise VectorsError('the film design reads tag vectors of --tag-dim {} values, but these hold '
                           '{}'.format(reads, vectorizer.dim))
    return vectorizer


def whitening_of(vectors):
    """The vocabulary's mean and ZCA whitening matrix. Directions with under 1/1000 of
    the largest variance are not blown up (they hold noise, or nothing for tiny vocabularies)."""
    vectors = np.asarray(vectors, np.float64)
    mean = vectors.mean(axis=0)
    if len(vectors) < 2:
        return mean, np.eye(vectors.shape[1])
    variances, axes = np.linalg.eigh(np.cov(vectors - mean, rowvar=False))
    floor = max(variances.max(), 1e-12) * 1e-3
    return mean, axes @ np.diag(1.0 / np.sqrt(np.maximum(variances, floor))) @ axes.T


def tag_plane(vectorizer, tags, size):
    """The fourth input plane (size x size) of a tag set; zeros without a vectorizer or tags."""
    if vectorizer is None or not tags:
        return np.zeros((size, size), np.float32)
    return plane_layout.lay_out(vectorizer.vector(tags), size)
