"""Generate the project's embedded default dataset: drawn chibi characters with tags.

Eight anime-style characters from four franchises are drawn with Pillow primitives
(no copyrighted art). Two pairs of them are "twins": 響/暁 and the two アルトリア share
every line and differ only in colour, so a colouring network can only get them right
by reading the character tag. Each image comes as

    OUT/{train,test}/color/NAME.png   RGB target (black outlines included)
    OUT/{train,test}/color/NAME.txt   pixiv-like tags, character tag first
    OUT/{train,test}/line/NAME.png    L line art drawn from the geometry
    OUT/test/mask/NAME.png            L region labels, see LABELS

plus OUT/characters.json describing the characters. About 15 % of the images carry
モノクロ and/or ノート and have a monochrome target (ノート ones on ruled paper).

How a picture is made: every shape is painted, back to front, into one supersampled
map of part ids, with detail strokes painted as an "ink" id. Outlines are where
neighbouring pixels belong to different outline groups, widened to a disk; colours
come from a per-character palette of the part ids, so twins' drawings are identical
by construction. The supersampled images are box-filtered down to the output size.

Masks label a pixel only when all its supersamples are the same region and none is
ink or outline; outline pixels, mixed edge pixels and the mouth are 0. Bows, hats,
ribbons and other accessories are "clothes"; the eye label covers iris, pupil and
highlights; blush is skin; hair shine is hair.

Usage: python make_default_data.py [--out data/default] [--train-per-char 40]
       [--test-per-char 8] [--size 256] [--seed 0]
Same arguments give byte-identical files.
"""
import argparse
import json
import math
import re
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

LABELS = {"background": 0, "skin": 1, "hair": 2, "eyes": 3, "clothes": 4}
MONO_TAGS = ["モノクロ", "ノート"]
MONO_FRACTION = 0.15
# The traits that name a colour of the character (hair, dress): a user who asks for the
# twin replaces these too (evaluate.py's tag swap).
COLOUR_TAGS = ["銀髪", "白髪", "紺髪", "金髪", "緑髪", "黒髪", "黒ドレス"]
GENERAL_TAGS = ["女の子", "笑顔", "立ち絵", "ちびキャラ", "落書き", "デフォルメ", "全身", "かわいい"]

SUPERSAMPLE = 3
OUTLINE_PX_AT_256 = 2.5
INK = 255  # part id of outlines and detail strokes
RULE, MARGIN = 254, 253  # part ids of a ノート picture's paper lines
RULE_COLOUR, MARGIN_COLOUR, PAPER_LINE_GREY = (168, 196, 232), (236, 150, 156), 214
WHITE = (255, 255, 255)
SPLITS = ("train", "test")

# ---------------------------------------------------------------- parts
# name: (mask region, palette key, outline group). Touching parts of one group meet
# without an outline (hair and its shine, iris and pupil); "none" regions label 0.
PART_SPECS = {
    "bow_rim": ("clothes", "bow_rim", "bow_rim"),
    "bow": ("clothes", "bow", "bow"),
    "bow_knot": ("clothes", "bow", "bow_knot"),
    "bun": ("hair", "hair", "bun"),
    "back_hair": ("hair", "hair", "back_hair"),
    "twin_tail": ("hair", "hair", "twin_tail"),
    "hair_tie": ("clothes", "hair_tie", "hair_tie"),
    "leg": ("skin", "skin", "leg"),
    "boot": ("clothes", "boots", "boot"),
    "shoe": ("clothes", "shoes", "shoe"),
    "underskirt": ("clothes", "underskirt", "underskirt"),
    "skirt": ("clothes", "skirt", "skirt"),
    "skirt_trim": ("clothes", "trim", "skirt_trim"),
    "apron": ("clothes", "apron", "apron"),
    "neck": ("skin", "skin", "neck"),
    "torso": ("clothes", "top", "torso"),
    "blouse": ("clothes", "blouse", "blouse"),
    "collar": ("clothes", "collar", "collar"),
    "breastplate": ("clothes", "armor", "breastplate"),
    "belt": ("clothes", "trim", "belt"),
    "neckwear": ("clothes", "accent", "neckwear"),
    "neckwear_knot": ("clothes", "accent", "neckwear_knot"),
    "arm": ("skin", "skin", "arm"),
    "sleeve": ("clothes", "sleeve", "sleeve"),
    "cuff": ("clothes", "cuff", "cuff"),
    "face": ("skin", "skin", "face"),
    "blush": ("skin", "blush", "face"),
    "mouth": ("none", "mouth", "mouth"),
    "iris": ("eyes", "eyes", "iris"),
    "iris_shade": ("eyes", "iris_shade", "iris"),
    "pupil": ("eyes", "pupil", "iris"),
    "highlight": ("eyes", "white", "iris"),
    "hair_front": ("hair", "hair", "hair_front"),
    "hair_shine": ("hair", "hair_shine", "hair_front"),
    "side_lock": ("hair", "hair", "side_lock"),
    "braid_a": ("hair", "hair", "braid_a"),
    "braid_b": ("hair", "hair", "braid_b"),
    "braid_ribbon": ("clothes", "ribbon", "braid_ribbon"),
    "tube": ("clothes", "tube", "tube"),
    "tube_band": ("clothes", "tube_band", "tube_band"),
    "clip": ("clothes", "clip", "clip"),
    "hat": ("clothes", "hat", "hat"),
    "hat_band": ("clothes", "hat_band", "hat_band"),
    "hat_bow": ("clothes", "hat_band", "hat_bow"),
    "hat_brim": ("clothes", "hat", "hat_brim"),
}
PART_ID = {name: index + 1 for index, name in enumerate(PART_SPECS)}
_GROUP_NAMES = sorted({group for _, _, group in PART_SPECS.values()})


def _part_lookup(field):
    """A 256-entry table from part id to one field of PART_SPECS as an integer."""
    table = np.zeros(256, np.uint8)
    for name, (region, _, group) in PART_SPECS.items():
        if field == "region":
            table[PART_ID[name]] = LABELS.get(region, 0)
        else:
            table[PART_ID[name]] = _GROUP_NAMES.index(group) + 1
    return table


REGION_OF_PART = _part_lookup("region")
GROUP_OF_PART = _part_lookup("group")

# ---------------------------------------------------------------- characters
SKIN = (255, 231, 214)
PALETTE_DEFAULTS = {
    "skin": SKIN, "blush": (252, 178, 178), "mouth": (196, 64, 74), "white": WHITE,
    "shoes": (78, 54, 46), "armor": (200, 205, 215), "underskirt": WHITE, "blouse": WHITE,
    "apron": WHITE, "bow_rim": WHITE, "clip": WHITE, "tube": WHITE, "hat_band": WHITE,
}

# Shape of the hair and head-wear; twins share one. top/half_width: how far the
# figure reaches above and beside the head centre, in head radii (for placement).
HAIR_STYLES = {
    "long": dict(back="long", back_len=2.75, side_len=0.8, tips=6, lock_len=1.85,
                 top=1.2, half_width=1.45),
    "artoria": dict(back="bob", back_len=0.9, side_len=0.55, tips=5, lock_len=0.95,
                    parted=True, bun=True, ahoge=True, top=1.9, half_width=1.3),
    "twintails": dict(back="medium", back_len=1.35, side_len=0.7, tips=6, lock_len=1.5,
                      tails=True, top=1.2, half_width=2.05),
    "rin": dict(back="bob", back_len=0.85, side_len=0.5, tips=5, lock_len=None,
                parted=True, bow="rin", clips=True, top=1.95, half_width=1.3),
    "reimu": dict(back="medium", back_len=1.95, side_len=0.65, tips=6, lock_len=1.25,
                  tubes=True, bow="reimu", top=2.02, half_width=1.55),
    "marisa": dict(back="wavy", back_len=2.55, side_len=0.7, tips=6, lock_len=None,
                   braid=True, hat=True, top=2.65, half_width=1.7),
}

# Clothes shapes; hem is the skirt's lower edge in head radii below the head centre.
OUTFITS = {
    "sailor": dict(hem=2.38, sleeve="long", collar=True, neckwear="scarf", pleats=True),
    "armor": dict(hem=2.78, sleeve="long", armor=True, underskirt=True, belt=True),
    "miku": dict(hem=2.3, sleeve="detached", bare_shoulders=True, neckwear="tie",
                 pleats=True, skirt_trim=True, boots=True),
    "rin": dict(hem=2.12, sleeve="short", collar=True, neckwear="scarf", shorts=True),
    "reimu": dict(hem=2.45, sleeve="wide", bare_shoulders=True, neckwear="ascot",
                  skirt_trim=True),
    "marisa": dict(hem=2.42, sleeve="short", blouse=True, apron=True),
}

SAILOR_COLOURS = {"clothes": (38, 46, 92), "top": (250, 250, 252), "collar": (38, 46, 92),
                  "accent": (214, 40, 52), "skirt": (38, 46, 92), "sleeve": (250, 250, 252),
                  "cuff": (38, 46, 92), "shoes": (58, 44, 40)}

CHARACTERS = [
    dict(tag="響", romaji="hibiki", franchise="艦これ", twin="暁", hair_style="long",
         outfit="sailor", traits=["銀髪", "白髪", "ロングヘア"],
         colors=dict(SAILOR_COLOURS, hair=(235, 235, 240), eyes=(84, 140, 214))),
    dict(tag="暁", romaji="akatsuki", franchise="艦これ", twin="響", hair_style="long",
         outfit="sailor", traits=["紺髪", "ロングヘア"],
         colors=dict(SAILOR_COLOURS, hair=(40, 45, 95), eyes=(160, 60, 104))),
    dict(tag="アルトリア・ペンドラゴン", romaji="artoria", franchise="FGO",
         twin="アルトリア・ペンドラゴン〔オルタ〕", hair_style="artoria", outfit="armor",
         traits=["金髪", "アホ毛"],
         colors=dict(hair=(242, 204, 86), eyes=(64, 158, 108), clothes=(44, 86, 190),
                     armor=(204, 210, 222), accent=(44, 86, 190), trim=(226, 184, 58),
                     underskirt=(246, 246, 250),
                     shoes=(204, 210, 222), cuff=(204, 210, 222))),
    dict(tag="アルトリア・ペンドラゴン〔オルタ〕", romaji="artoria_alter", franchise="FGO",
         twin="アルトリア・ペンドラゴン", hair_style="artoria", outfit="armor",
         traits=["金髪", "黒ドレス"],
         colors=dict(hair=(232, 228, 202), eyes=(236, 188, 36), clothes=(36, 30, 42),
                     armor=(78, 78, 90), accent=(36, 30, 42), trim=(172, 30, 46),
                     underskirt=(112, 24, 40),
                     shoes=(78, 78, 90), cuff=(78, 78, 90))),
    dict(tag="初音ミク", romaji="miku", franchise="ボーカロイド", twin=None,
         hair_style="twintails", outfit="miku", traits=["ツインテール", "緑髪"],
         colors=dict(hair=(0, 190, 180), eyes=(0, 160, 158), clothes=(188, 192, 198),
                     accent=(0, 176, 170), skirt=(56, 58, 66), trim=(0, 176, 170),
                     boots=(56, 58, 66), shoes=(56, 58, 66), hair_tie=(224, 66, 122))),
    dict(tag="鏡音リン", romaji="rin", franchise="ボーカロイド", twin=None,
         hair_style="rin", outfit="rin", traits=["金髪", "リボン"],
         colors=dict(hair=(250, 216, 96), eyes=(60, 132, 222), clothes=(248, 248, 250),
                     collar=(196, 202, 214), accent=(250, 204, 56), skirt=(44, 44, 50),
                     cuff=(44, 44, 50), bow=WHITE, shoes=(240, 240, 240))),
    dict(tag="博麗霊夢", romaji="reimu", franchise="東方", twin=None,
         hair_style="reimu", outfit="reimu", traits=["黒髪", "巫女"],
         colors=dict(hair=(42, 32, 36), eyes=(186, 54, 50), clothes=(214, 36, 46),
                     sleeve=WHITE, accent=(250, 212, 72), trim=WHITE, bow=(214, 36, 46),
                     tube_band=(214, 36, 46), cuff=WHITE)),
    dict(tag="霧雨魔理沙", romaji="marisa", franchise="東方", twin=None,
         hair_style="marisa", outfit="marisa", traits=["金髪", "魔女"],
         colors=dict(hair=(248, 214, 102), eyes=(214, 164, 38), clothes=(36, 36, 44),
                     sleeve=WHITE, cuff=WHITE, hat=(36, 36, 44), ribbon=(64, 150, 88),
                     accent=WHITE)),
]


def find_character(character):
    """A CHARACTERS entry from itself, its tag or its romaji."""
    if isinstance(character, dict):
        return character
    for entry in CHARACTERS:
        if character in (entry["tag"], entry["romaji"]):
            return entry
    raise KeyError("unknown character: {!r}".format(character))


def _blend(colour, other, amount):
    return tuple(int(round(a + (b - a) * amount)) for a, b in zip(colour, other))


def palette(character):
    """Every palette key of a character -> RGB, filling the derived ones."""
    colours = dict(PALETTE_DEFAULTS)
    main = character["colors"]["clothes"]
    for key in ("top", "collar", "accent", "skirt", "hat", "bow", "ribbon", "hair_tie"):
        colours[key] = main
    colours.update(character["colors"])
    colours.setdefault("sleeve", colours["top"])
    colours.setdefault("cuff", colours["accent"])
    colours.setdefault("trim", colours["accent"])
    colours.setdefault("boots", colours["shoes"])
    colours.setdefault("tube_band", colours["accent"])
    colours["hair_shine"] = _blend(colours["hair"], WHITE, 0.35)
    colours["iris_shade"] = _blend(colours["eyes"], (0, 0, 0), 0.4)
    colours["pupil"] = _blend(colours["eyes"], (0, 0, 0), 0.7)
    return colours


def palette_table(character):
    """A (256, 3) uint8 table from part id to the character's colour; 0 is white."""
    colours = palette(character)
    table = np.full((256, 3), 255, np.uint8)
    for name, (_, key, _) in PART_SPECS.items():
        table[PART_ID[name]] = colours[key]
    table[INK], table[RULE], table[MARGIN] = (0, 0, 0), RULE_COLOUR, MARGIN_COLOUR
    return table


LINE_ART_OF_PART = np.full(256, 255, np.uint8)
LINE_ART_OF_PART[[INK, RULE, MARGIN]] = (0, PAPER_LINE_GREY, PAPER_LINE_GREY)


# ---------------------------------------------------------------- geometry helpers
def ellipse_points(cx, cy, rx, ry, angle=0.0, n=40):
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return _rotate(np.stack([rx * np.cos(t), ry * np.sin(t)], 1), angle) + (cx, cy)


def arc_points(cx, cy, rx, ry, start, end, n=16):
    """Points on an ellipse from angle start to end (degrees; y points down, 270 is up)."""
    t = np.radians(np.linspace(start, end, n))
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], 1)


def bezier(p0, p1, p2, n=8):
    """Quadratic Bezier from p0 to p2 pulled towards p1."""
    t = np.linspace(0, 1, n)[:, None]
    p0, p1, p2 = (np.asarray(p, float) for p in (p0, p1, p2))
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t ** 2 * p2


def _rotate(points, degrees):
    if not degrees:
        return points
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    return points @ np.array([[c, s], [-s, c]])


def mirrored(points):
    return np.asarray(points, float) * (-1, 1)


def polyline_slice(points, start, end):
    """The part of a polyline between fractions start and end of its length."""
    points = np.asarray(points, float)
    lengths = np.r_[0, np.cumsum(np.hypot(*np.diff(points, axis=0).T))]
    wanted = np.linspace(start, end, 12) * lengths[-1]
    return np.stack([np.interp(wanted, lengths, points[:, 0]),
                     np.interp(wanted, lengths, points[:, 1])], 1)


def strip_polygon(centre, widths):
    """A polygon around a centre line with the given full width at each point."""
    centre = np.asarray(centre, float)
    tangent = np.gradient(centre, axis=0)
    tangent /= np.maximum(np.hypot(*tangent.T), 1e-9)[:, None]
    normal = np.stack([-tangent[:, 1], tangent[:, 0]], 1) * (np.asarray(widths) / 2)[:, None]
    return np.concatenate([centre + normal, (centre - normal)[::-1]])


# ---------------------------------------------------------------- painting
class Painter:
    """Paints part ids into the supersampled map through one coordinate frame.

    Local coordinates are in head radii around the head centre, y down; the frame
    mirrors, tilts about the neck, scales and moves them onto the canvas."""

    def __init__(self, draw, origin, scale, mirror, tilt, outline_px, stretch_x=1.0):
        self.draw, self.origin, self.scale = draw, np.asarray(origin, float), scale
        self.mirror, self.tilt, self.outline_px = mirror, tilt, outline_px
        self.stretch_x = stretch_x

    def to_canvas(self, points):
        points = np.asarray(points, float).reshape(-1, 2) * (self.stretch_x, 1)
        if self.mirror:
            points = points * (-1, 1)
        pivot = np.array([0.0, 0.9])
        points = _rotate(points - pivot, self.tilt) + pivot
        return [tuple(p) for p in points * self.scale + self.origin]

    def poly(self, part, points):
        self.draw.polygon(self.to_canvas(points), fill=PART_ID[part])

    def ellipse(self, part, cx, cy, rx, ry, angle=0.0):
        self.poly(part, ellipse_points(cx, cy, rx, ry, angle))

    def band(self, part, points, width):
        """A thick polyline with round ends, width in head radii."""
        self._thick_line(points, PART_ID[part], width * self.scale)

    def stroke(self, points, weight=0.75):
        """An ink line, weight relative to the outline width."""
        self._thick_line(points, INK, max(1.0, weight * self.outline_px))

    def _thick_line(self, points, value, width_px):
        xy = self.to_canvas(points)
        self.draw.line(xy, fill=value, width=max(1, int(round(width_px))), joint="curve")
        radius = width_px / 2
        for x, y in (xy[0], xy[-1]):
            self.draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=value)


def both_sides(draw_one):
    """Calls draw_one(side) for side -1 (left) and +1 (right)."""
    for side in (-1, 1):
        draw_one(side)


# ---------------------------------------------------------------- behind the head
def bow_loop(length, height):
    """One loop of a ribbon bow, knot at the origin, pointing along +x."""
    upper = bezier((0, -0.06), (length * 0.45, -height * 1.05), (length, -height * 0.75), 8)
    end = arc_points(length, -height * 0.05, height * 0.3, height * 0.7, 270, 450, 9)
    lower = bezier((length, height * 0.65), (length * 0.5, height * 0.85), (0, 0.06), 8)
    return np.concatenate([upper, end[1:-1], lower])


def draw_bow(head, part, knot, length, height, angle, rim=0.0):
    """A two-loop bow; rim > 0 first paints a frill of that width around the loops."""
    for side in (-1, 1):
        loop = _rotate(bow_loop(length, height), angle)
        if rim:
            frill = _rotate(bow_loop(length + rim, height + 1.6 * rim), angle)
            head.poly("bow_rim", frill * (side, 1) + knot)
        head.poly(part, loop * (side, 1) + knot)
        fold = np.array([(0.15, 0.0), (length * 0.55, -height * 0.1), (length * 0.8, -height * 0.3)])
        fold = _rotate(fold, angle)
        head.stroke(fold * (side, 1) + knot, 0.6)
    head.ellipse("bow_knot", knot[0], knot[1], 0.15 + rim, 0.14 + rim)


def draw_back_accessories(head, style):
    if style.get("bow") == "reimu":
        draw_bow(head, "bow", (0, -1.02), 0.95, 0.5, -22, rim=0.08)
    elif style.get("bow") == "rin":
        draw_bow(head, "bow", (0, -1.18), 0.72, 0.4, -32)
    if style.get("bun"):
        head.ellipse("bun", 0, -1.1, 0.36, 0.32)
        head.stroke(arc_points(0, -1.1, 0.22, 0.18, 200, 340, 8), 0.6)


def draw_back_hair(head, style, params):
    length = style["back_len"] * (params["hair_length"] if style["back"] != "bob" else 1.0)
    top = arc_points(0, 0.02, 1.13, 1.13, 180, 360, 20)
    kind = style["back"]
    if kind == "bob":
        right = [(1.17, 0.4), (1.12, length)]
        bottom = [(0.7, length - 0.12), (0.35, length + 0.02), (0, length - 0.1),
                  (-0.35, length + 0.02), (-0.7, length - 0.12)]
    else:
        flare = {"long": 1.26, "medium": 1.22, "wavy": 1.4}[kind]
        ys = np.linspace(0.1, length - 0.1, 10)
        wave = 0.07 * np.sin(ys * 5.0) if kind == "wavy" else 0.0
        xs = 1.13 + (flare - 1.13) * (ys / length) + wave
        right = list(zip(xs, ys))
        tips = np.linspace(flare, -flare, 9)
        bottom = [(x, length + (0.12 if i % 2 else -0.1)) for i, x in enumerate(tips)]
    outline = np.concatenate([top, right, bottom, mirrored(right)[::-1]])
    head.poly("back_hair", outline)
    if kind != "bob":
        for side in (-1, 1):
            head.stroke(bezier((side * 1.0, 1.1), (side * 1.02, length * 0.7),
                               (side * 0.95, length - 0.12), 8), 0.5)
    if style.get("tails"):
        draw_twin_tails(head, params)


def draw_twin_tails(head, params):
    length = 3.35 * params["hair_length"]
    t = np.linspace(0, 1, 18)
    for side in (-1, 1):
        x = side * (0.82 + 0.62 * np.sin(np.pi * t * 0.75) + 0.12 * t)
        y = -0.72 + t * length
        widths = 0.25 + 0.5 * np.sin(np.pi * np.minimum(t * 1.25, 1.0)) ** 0.8
        widths[-1] = 0.0
        head.poly("twin_tail", strip_polygon(np.stack([x, y], 1), widths))
        head.stroke(np.stack([x, y], 1)[3:12] + (side * -0.06, 0), 0.6)


# ---------------------------------------------------------------- body
def draw_legs(body, outfit):
    for side in (-1, 1):
        body.band("leg", [(side * 0.2, outfit["hem"] - 0.2), (side * 0.21, 2.92)], 0.19)
        if outfit.get("boots"):
            body.band("boot", [(side * 0.21, 2.5), (side * 0.215, 2.92)], 0.25)
        body.ellipse("shoe", side * 0.24, 2.98, 0.17, 0.1)


def skirt_outline(hem, hem_half_width, waist=1.72, waist_half_width=0.47):
    hem_curve = [(x, hem + 0.07 * (1 - (x / hem_half_width) ** 2))
                 for x in np.linspace(hem_half_width, -hem_half_width, 9)]
    return [(-waist_half_width, waist), (waist_half_width, waist)] + hem_curve


def draw_skirt(body, outfit):
    hem = outfit["hem"]
    if outfit.get("shorts"):
        body.poly("skirt", [(-0.47, 1.72), (0.47, 1.72), (0.62, hem), (0.07, hem),
                            (0, hem - 0.16), (-0.07, hem), (-0.62, hem)])
        return
    width = 1.0 if hem > 2.6 else 0.86
    if outfit.get("underskirt"):
        scallops = [(x, hem + 0.12 + 0.05 * math.cos(x * 14))
                    for x in np.linspace(width + 0.04, -width - 0.04, 15)]
        body.poly("underskirt", [(-0.47, 1.72), (0.47, 1.72)] + scallops)
    body.poly("skirt", skirt_outline(hem, width))
    if outfit.get("skirt_trim"):
        upper = [(x * (width - 0.05) / width, y - 0.13) for x, y in skirt_outline(hem, width)[2:]]
        body.poly("skirt_trim", upper + skirt_outline(hem, width)[2:][::-1])
    if outfit.get("apron"):
        body.poly("apron", [(-0.34, 1.76), (0.34, 1.76), (0.5, hem - 0.1), (0.25, hem - 0.04),
                            (0, hem - 0.1), (-0.25, hem - 0.04), (-0.5, hem - 0.1)])
    if outfit.get("pleats"):
        for x in (-0.5, -0.17, 0.17, 0.5):
            body.stroke([(x * 0.5, 1.85), (x, hem - 0.03)], 0.6)


TORSO = [(-0.2, 0.98), (-0.48, 1.04), (-0.6, 1.15), (-0.47, 1.8),
         (0.47, 1.8), (0.6, 1.15), (0.48, 1.04), (0.2, 0.98)]


def draw_torso(body, outfit):
    body.band("neck", [(0, 0.7), (0, 1.08)], 0.34)
    torso = TORSO
    if outfit.get("bare_shoulders"):
        torso = [(-0.24, 1.02), (-0.42, 1.1), (-0.47, 1.8), (0.47, 1.8), (0.42, 1.1), (0.24, 1.02)]
    body.poly("torso", torso)
    if outfit.get("blouse"):
        body.poly("blouse", [(-0.22, 0.98), (0.22, 0.98), (0, 1.38)])
        both_sides(lambda s: body.ellipse("hat_bow", s * 0.1, 1.1, 0.1, 0.06, s * 15))
    if outfit.get("armor"):
        body.poly("breastplate", [(-0.5, 1.1), (-0.22, 1.02), (0.22, 1.02), (0.5, 1.1),
                                  (0.48, 1.45), (0, 1.58), (-0.48, 1.45)])
    if outfit.get("belt"):
        body.poly("belt", [(-0.47, 1.66), (0.47, 1.66), (0.47, 1.79), (-0.47, 1.79)])
    if outfit.get("collar"):
        body.poly("collar", [(-0.64, 1.1), (-0.38, 1.38), (0, 1.6), (0.38, 1.38), (0.64, 1.1),
                             (0.24, 0.98), (0, 1.3), (-0.24, 0.98)])
        body.stroke([(-0.5, 1.13), (-0.3, 1.35), (0, 1.5), (0.3, 1.35), (0.5, 1.13)], 0.5)
    neckwear = outfit.get("neckwear")
    if neckwear == "scarf":
        body.poly("neckwear", [(-0.2, 1.48), (0.2, 1.48), (0.07, 1.72), (0, 1.66), (-0.07, 1.72)])
        body.ellipse("neckwear_knot", 0, 1.47, 0.1, 0.08)
    elif neckwear == "tie":
        body.poly("neckwear", [(-0.06, 1.1), (0.06, 1.1), (0.11, 1.62), (0, 1.74), (-0.11, 1.62)])
        body.poly("neckwear_knot", [(-0.1, 1.0), (0.1, 1.0), (0.06, 1.12), (-0.06, 1.12)])
    elif neckwear == "ascot":
        body.poly("neckwear", [(-0.05, 1.08), (-0.19, 1.38), (0, 1.3), (0.19, 1.38), (0.05, 1.08)])
        body.ellipse("neckwear_knot", 0, 1.08, 0.1, 0.08)


ARM_POSES = {
    "down": [(0.74, 1.45), (0.8, 1.8)],
    "front": [(0.72, 1.5), (0.2, 1.84)],
    "hips": [(0.95, 1.45), (0.5, 1.72)],
    "wave": [(0.98, 1.1), (1.22, 0.6)],
}
SLEEVES = {"long": (0.0, 0.76, 0.3), "short": (0.0, 0.32, 0.36),
           "detached": (0.5, 0.9, 0.3), "wide": (0.38, 0.95, 0.44)}


def draw_arms(body, outfit, pose):
    for side in (-1, 1):
        arm_pose = pose if not (pose == "wave" and side < 0) else "down"
        elbow, wrist = ARM_POSES[arm_pose]
        arm = [(side * 0.5, 1.14), (side * elbow[0], elbow[1]), (side * wrist[0], wrist[1])]
        body.band("arm", arm, 0.19)
        body.ellipse("arm", side * wrist[0], wrist[1], 0.12, 0.12)
        start, end, width = SLEEVES[outfit["sleeve"]]
        body.band("sleeve", polyline_slice(arm, start, end), width)
        if outfit["sleeve"] != "short":
            body.band("cuff", polyline_slice(arm, end - 0.08, end), width + 0.03)


# ---------------------------------------------------------------- head
def face_outline():
    t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    lower = np.sin(t) > 0
    x = np.cos(t) * np.where(lower, 1 - 0.12 * np.sin(t) ** 3, 1.0)
    y = 0.05 + np.sin(t) * np.where(lower, 0.9, 1.0)
    return np.stack([x, y], 1)


def draw_face(head, params):
    head.poly("face", face_outline())
    if params["blush"]:
        for side in (-1, 1):
            head.ellipse("blush", side * 0.6, 0.44, 0.17, 0.075)
    both_sides(lambda side: draw_eye(head, side, params))
    draw_mouth(head, params["mouth"])


def draw_eye(head, side, params):
    cx, cy, size = side * params["eye_spacing"], params["eye_height"], params["eye_size"]
    rx, ry = 0.15 * size, 0.2 * size
    head.ellipse("iris", cx, cy, rx, ry)
    head.poly("iris_shade", arc_points(cx, cy, rx, ry, 205, 335))
    head.ellipse("pupil", cx, cy + 0.04 * size, 0.075 * size, 0.1 * size)
    head.ellipse("highlight", cx + 0.05 * size, cy - 0.06 * size, 0.045 * size, 0.045 * size)
    head.ellipse("highlight", cx - 0.05 * size, cy + 0.1 * size, 0.025 * size, 0.025 * size)
    lash = arc_points(cx, cy, rx + 0.02, ry + 0.015, 195, 345, 12)
    outer_end = lash[0] if side < 0 else lash[-1]
    head.stroke(lash, 1.5)
    head.stroke([outer_end, outer_end + (side * 0.07, -0.05)], 1.2)


def draw_mouth(head, style):
    if style == "smile":
        head.stroke(arc_points(0, 0.5, 0.1, 0.08, 25, 155, 10), 0.8)
    elif style == "cat":
        for side in (-1, 1):
            head.stroke(arc_points(side * 0.055, 0.56, 0.055, 0.05, 0, 180, 10), 0.8)
    elif style == "open":
        head.poly("mouth", np.concatenate([[(-0.13, 0.54), (0.13, 0.54)],
                                           arc_points(0, 0.54, 0.13, 0.15, 10, 170, 12)]))
    else:
        head.ellipse("mouth", 0, 0.6, 0.05, 0.06)


def bangs_outline(style, jitter):
    """Hair cap with face-framing sides and a zig-zag fringe, as one polygon."""
    side_len, tips = style["side_len"], style["tips"]
    outer = arc_points(0, 0.02, 1.13, 1.13, 180, 360, 24)
    right_side = [(1.13, side_len * 0.5), (1.09, side_len), (0.95, side_len + 0.12),
                  (0.84, side_len - 0.12), (0.86, 0.12)]
    xs = np.linspace(0.86, -0.86, 2 * tips + 1)
    fringe = [np.array([(0.86, 0.12)])]
    for k in range(1, 2 * tips + 1):
        if k == 2 * tips:
            point = (xs[k], 0.12)
        elif k % 2:
            point = (xs[k], -0.1 + 0.05 * jitter[k % len(jitter)])
        else:
            notch = -0.5 if not (style.get("parted") and k == tips) else -0.72
            point = (xs[k], notch + 0.06 * jitter[k % len(jitter)])
        previous = fringe[-1][-1]
        pull = (previous + point) / 2 + (0.07, 0.0)
        fringe.append(bezier(previous, pull, point, 5)[1:])
    left_side = mirrored(right_side)[::-1]
    return np.concatenate([outer, right_side, np.concatenate(fringe), left_side])


def draw_front_hair(head, style, params):
    head.poly("hair_front", bangs_outline(style, params["bangs_jitter"]))
    upper = arc_points(0, 0.02, 0.94, 0.94, 228, 312, 12)
    lower = arc_points(0, 0.06, 0.8, 0.8, 312, 228, 12)
    head.poly("hair_shine", np.concatenate([upper, lower]))
    if style.get("ahoge"):
        head.poly("hair_front", np.concatenate([
            bezier((-0.08, -1.08), (-0.2, -1.6), (0.3, -1.78), 8),
            bezier((0.3, -1.78), (0.02, -1.58), (0.1, -1.08), 8)]))
    if style.get("lock_len"):
        both_sides(lambda side: draw_side_lock(head, side, style))
    if style.get("braid"):
        draw_braid(head)
    if style.get("tails"):
        both_sides(lambda side: head.ellipse("hair_tie", side * 0.86, -0.74, 0.14, 0.2, side * 35))
    if style.get("clips"):
        head.poly("clip", _rotate(np.array([(-0.16, -0.04), (0.16, -0.04), (0.16, 0.04),
                                            (-0.16, 0.04)]), -35) + (0.52, -0.46))
        head.poly("clip", _rotate(np.array([(-0.16, -0.04), (0.16, -0.04), (0.16, 0.04),
                                            (-0.16, 0.04)]), -35) + (0.64, -0.28))


def draw_side_lock(head, side, style):
    length = style["lock_len"]
    t = np.linspace(0, 1, 14)
    centre = np.stack([0.93 + 0.06 * np.sin(np.pi * t * 1.5), -0.25 + t * (length + 0.25)], 1)
    widths = 0.3 * (1 - t ** 3)
    head.poly("side_lock", strip_polygon(centre, widths) * (side, 1))
    if style.get("tubes"):
        y = length * 0.55
        x0, x1 = 0.8, 1.1
        head.poly("tube", [(side * x0, y), (side * x1, y),
                           (side * x1, y + 0.26), (side * x0, y + 0.26)])
        head.poly("tube_band", [(side * x0, y + 0.09), (side * x1, y + 0.09),
                                (side * x1, y + 0.17), (side * x0, y + 0.17)])


def draw_braid(head):
    centres = np.linspace((-0.98, 0.25), (-1.04, 1.55), 6)
    for i, (x, y) in enumerate(centres):
        head.ellipse("braid_a" if i % 2 else "braid_b", x, y, 0.16, 0.17, 20)
    x, y = centres[-1]
    head.poly("side_lock", [(x - 0.08, y + 0.1), (x + 0.08, y + 0.1),
                            (x + 0.02, y + 0.45), (x - 0.1, y + 0.4)])
    for side in (-1, 1):
        head.ellipse("braid_ribbon", x + side * 0.12, y + 0.14, 0.12, 0.07, side * -20)


def draw_hat(head):
    head.poly("hat", np.concatenate([
        [(-0.78, -0.82)], bezier((-0.78, -0.82), (-0.45, -1.9), (0.55, -2.48), 10),
        bezier((0.55, -2.48), (0.25, -1.9), (0.78, -0.82), 10)]))
    head.poly("hat_band", [(-0.78, -0.82), (-0.7, -1.1), (0.7, -1.1), (0.78, -0.82)])
    head.ellipse("hat_bow", 0.42, -0.98, 0.2, 0.12, -25)
    head.ellipse("hat_bow", 0.72, -0.98, 0.18, 0.11, 25)
    head.ellipse("hat_brim", 0, -0.78, 1.58, 0.32, -4)
    head.stroke(arc_points(0, -0.78, 1.0, 0.17, 15, 165, 14), 0.6)


# ---------------------------------------------------------------- whole picture
def sample_params(rng, size):
    """Pose and face parameters of one picture, independent of the character.

    Lengths are relative (head_radius is a fraction of the image side, the rest are
    in head radii), so one draw renders alike at any size; size is accepted for
    callers' symmetry with render. A whole chibi figure is about 4.3 (bare head) to
    5.8 (witch hat) head radii tall, hence radii of 0.15-0.21 of the side."""
    return {
        "head_radius": float(rng.uniform(0.15, 0.21)),
        "offset": [float(v) for v in rng.uniform(-1, 1, 2)],
        "tilt": float(rng.uniform(-7, 7)),
        "mirror": bool(rng.random() < 0.5),
        "eye_spacing": float(rng.uniform(0.38, 0.46)),
        "eye_height": float(rng.uniform(0.17, 0.24)),
        "eye_size": float(rng.uniform(0.95, 1.12)),
        "mouth": str(rng.choice(["smile", "cat", "open", "small"])),
        "arms": str(rng.choice(list(ARM_POSES))),
        "hair_length": float(rng.uniform(0.88, 1.1)),
        "body_width": float(rng.uniform(0.95, 1.06)),
        "blush": bool(rng.random() < 0.7),
        "bangs_jitter": [float(v) for v in rng.uniform(-1, 1, 7)],
    }


FEET = 3.1  # lowest point of the figure, head radii below the head centre


def place_figure(style, params, size):
    """Head centre (x, y) and radius in output pixels; tall figures lose their feet."""
    radius = params["head_radius"] * size
    offset_x, offset_y = params["offset"]
    free_y = size - (style["top"] + FEET) * radius
    if free_y >= 0:
        y = style["top"] * radius + free_y * (0.5 + 0.45 * offset_y)
    else:
        y = style["top"] * radius + 0.02 * size * (2 + offset_y)
    free_x = max(0.0, size - 2 * style["half_width"] * radius)
    return size / 2 + 0.45 * offset_x * free_x, y, radius


def paint_parts(character, params, size):
    """The supersampled part-id map of one picture, uint8 (size*K, size*K)."""
    style = HAIR_STYLES[character["hair_style"]]
    outfit = OUTFITS[character["outfit"]]
    x, y, radius = place_figure(style, params, size)
    image = Image.new("L", (size * SUPERSAMPLE,) * 2, 0)
    draw = ImageDraw.Draw(image)
    outline_px = OUTLINE_PX_AT_256 * size / 256 * SUPERSAMPLE
    origin, scale = (x * SUPERSAMPLE, y * SUPERSAMPLE), radius * SUPERSAMPLE
    head = Painter(draw, origin, scale, params["mirror"], params["tilt"], outline_px)
    body = Painter(draw, origin, scale, params["mirror"], 0.0, outline_px, params["body_width"])

    draw_back_accessories(head, style)
    draw_back_hair(head, style, params)
    draw_legs(body, outfit)
    draw_skirt(body, outfit)
    draw_torso(body, outfit)
    draw_arms(body, outfit, params["arms"])
    draw_face(head, params)
    draw_front_hair(head, style, params)
    if style.get("hat"):
        draw_hat(head)
    return np.asarray(image)


def outline_map(parts, size):
    """Ink plus the boundaries between outline groups, widened to the outline width."""
    ink = parts == INK
    group = GROUP_OF_PART[parts]
    edge = np.zeros_like(ink)
    for axis in (0, 1):
        a = [slice(None)] * 2
        b = [slice(None)] * 2
        a[axis], b[axis] = slice(1, None), slice(None, -1)
        differs = (group[tuple(a)] != group[tuple(b)]) & ~ink[tuple(a)] & ~ink[tuple(b)]
        edge[tuple(a)] |= differs
        edge[tuple(b)] |= differs
    # the marked edge is 2 supersamples wide; a disk grows it to the outline width
    radius = (OUTLINE_PX_AT_256 * size / 256 * SUPERSAMPLE - 2) / 2 + 0.5
    reach = int(math.floor(radius))
    widened = edge.copy()
    height, width = edge.shape
    for dy in range(-reach, reach + 1):
        for dx in range(-reach, reach + 1):
            if (dy or dx) and dy * dy + dx * dx <= radius * radius:
                widened[max(dy, 0):height + min(dy, 0), max(dx, 0):width + min(dx, 0)] |= \
                    edge[max(-dy, 0):height + min(-dy, 0), max(-dx, 0):width + min(-dx, 0)]
    return widened | ink


def add_ruled_paper(drawn, size):
    """Notebook rules and a margin line on the background of a ノート picture."""
    k = SUPERSAMPLE
    rows = np.zeros(drawn.shape[0], bool)
    spacing = max(4, int(round(size / 11)))
    for y in range(spacing, size, spacing):
        rows[y * k:(y + 1) * k] = True
    columns = np.zeros(drawn.shape[1], bool)
    margin = int(round(size * 0.1))
    columns[margin * k:(margin + 1) * k] = True
    background = drawn == 0
    drawn[background & rows[:, None]] = RULE
    drawn[background & columns[None, :]] = MARGIN


def block_views(array, k):
    """The k*k sub-pixel grids of a supersampled image, each at output size."""
    return [array[i::k, j::k] for i in range(k) for j in range(k)]


def pure_region_mask(parts, outline, k):
    """Region label of output pixels whose supersamples are one region and ink-free."""
    regions = block_views(REGION_OF_PART[parts], k)
    pure = ~np.logical_or.reduce(block_views(outline, k))
    for other in regions[1:]:
        pure &= other == regions[0]
    return np.where(pure, regions[0], 0).astype(np.uint8)


def to_monochrome(rgb):
    """Luminance (Rec. 601) replicated into three channels."""
    weights = np.array([299, 587, 114], np.uint32)
    grey = ((rgb.astype(np.uint32) * weights).sum(axis=2) + 500) // 1000
    return np.repeat(grey.astype(np.uint8)[:, :, None], 3, axis=2)


def render(character, params, size, tone="color"):
    """One picture -> (colour RGB uint8 (S,S,3), line art uint8 (S,S), mask uint8 (S,S)).

    tone: "color", "mono" (monochrome target) or "note" (monochrome on ruled paper)."""
    character = find_character(character)
    parts = paint_parts(character, params, size)
    outline = outline_map(parts, size)
    drawn = parts.copy()
    drawn[outline] = INK
    if tone == "note":
        add_ruled_paper(drawn, size)

    k = SUPERSAMPLE
    indexed = Image.fromarray(drawn, "L")
    line = np.asarray(indexed.point(LINE_ART_OF_PART.tolist()).reduce(k))
    indexed.putpalette(palette_table(character).tobytes())
    colour = np.asarray(indexed.convert("RGB").reduce(k))
    if tone in ("mono", "note"):
        colour = to_monochrome(colour)
    return colour, line, pure_region_mask(parts, outline, k)


# ---------------------------------------------------------------- dataset
def tone_schedule(rng, per_char, n_characters):
    """Tone and extra tags of each picture, indexed [index * n_characters + character].

    round(MONO_FRACTION * count) pictures (at least one) are monochrome, shared out as
    evenly as possible over the characters, at random indices within each."""
    count = per_char * n_characters
    mono_total = max(1, int(round(MONO_FRACTION * count))) if count else 0
    per_character = np.full(n_characters, mono_total // n_characters)
    per_character[rng.permutation(n_characters)[:mono_total % n_characters]] += 1
    schedule = [("color", [])] * count
    for character, mono_count in enumerate(per_character):
        for index in rng.permutation(per_char)[:mono_count]:
            u = rng.random()
            if u < 0.5:
                tone = ("mono", ["モノクロ"])
            elif u < 0.8:
                tone = ("note", ["ノート"])
            else:
                tone = ("note", ["ノート", "モノクロ"])
            schedule[index * n_characters + character] = tone
    return schedule


def make_tags(character, extra_tags, rng):
    """Character tag first, then franchise, some trait and general tags, shuffled."""
    traits = [tag for tag in character["traits"] if rng.random() < 0.5]
    count = int(rng.integers(0, 4))
    general = [GENERAL_TAGS[i] for i in rng.choice(len(GENERAL_TAGS), count, replace=False)]
    rest = [character["franchise"]] + traits + general + list(extra_tags)
    return [character["tag"]] + [rest[i] for i in rng.permutation(len(rest))]


def _prepare_folders(out):
    folders = {}
    for split in SPLITS:
        for kind in ("color", "line") + (("mask",) if split == "test" else ()):
            folder = out / split / kind
            folder.mkdir(parents=True, exist_ok=True)
            for stale in list(folder.glob("*.png")) + list(folder.glob("*.txt")):
                stale.unlink()
            folders[split, kind] = folder
    return folders


def generate(out_dir, train_per_char=40, test_per_char=8, size=256, seed=0):
    """Write the whole dataset into out_dir; returns the counts written."""
    out = Path(out_dir)
    folders = _prepare_folders(out)
    counts, mono_names = {}, {}
    for split_index, (split, per_char) in enumerate(zip(SPLITS, (train_per_char, test_per_char))):
        schedule = tone_schedule(np.random.default_rng([seed, split_index, 1000]),
                                 per_char, len(CHARACTERS))
        mono_names[split] = []
        for index in range(per_char):
            for char_index, character in enumerate(CHARACTERS):
                rng = np.random.default_rng([seed, split_index, char_index, index])
                params = sample_params(rng, size)
                tone, extra_tags = schedule[index * len(CHARACTERS) + char_index]
                tags = make_tags(character, extra_tags, rng)
                colour, line, mask = render(character, params, size, tone)
                name = "{}_{:04d}".format(character["romaji"], index)
                Image.fromarray(colour, "RGB").save(folders[split, "color"] / (name + ".png"))
                tags_path = folders[split, "color"] / (name + ".txt")
                tags_path.write_text(",".join(tags) + "\n", "utf-8")
                Image.fromarray(line, "L").save(folders[split, "line"] / (name + ".png"))
                if split == "test":
                    Image.fromarray(mask, "L").save(folders[split, "mask"] / (name + ".png"))
                if tone != "color":
                    mono_names[split].append(name)
        counts[split] = per_char * len(CHARACTERS)
        counts[split + "_mono"] = len(mono_names[split])
    write_description(out, size, seed, counts, mono_names)
    return counts


def write_description(out, size, seed, counts, mono_names):
    description = {
        "labels": LABELS,
        "characters": [
            {"tag": c["tag"], "romaji": c["romaji"], "franchise": c["franchise"], "twin": c["twin"],
             "colour_tags": [t for t in c["traits"] if t in COLOUR_TAGS],
             "colors": {key: list(c["colors"].get(key, SKIN))
                        for key in ("hair", "eyes", "clothes", "skin")}}
            for c in CHARACTERS],
        "mono_tags": MONO_TAGS,
        "size": size,
        "seed": seed,
        "counts": counts,
        "mono": mono_names,
    }
    text = json.dumps(description, ensure_ascii=False, indent=1)
    text = re.sub(r"\[\s+(\d+),\s+(\d+),\s+(\d+)\s+\]", r"[\1, \2, \3]", text)  # RGB on one line
    (out / "characters.json").write_text(text + "\n", "utf-8")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="data/default", help="output folder")
    parser.add_argument("--train-per-char", type=int, default=40)
    parser.add_argument("--test-per-char", type=int, default=8)
    parser.add_argument("--size", type=int, default=256, help="image side in pixels")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.size < 32 or args.seed < 0 or args.train_per_char < 0 or args.test_per_char < 0:
        parser.error("need --size >= 32 and non-negative counts and seed")
    started = time.perf_counter()
    counts = generate(args.out, args.train_per_char, args.test_per_char, args.size, args.seed)
    print("wrote {} train + {} test images ({} + {} monochrome) of {} characters, {}px, to {} "
          "in {:.1f}s".format(counts["train"], counts["test"], counts["train_mono"],
                              counts["test_mono"], len(CHARACTERS), args.size, args.out,
                              time.perf_counter() - started))


if __name__ == "__main__":
    main()
