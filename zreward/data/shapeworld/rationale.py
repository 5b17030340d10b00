"""Templated rationales: what an image shows, what fails on each dimension, and the judgement.

Each fact has several phrasings, picked at random, so that a model trained on the rationales learns
the facts rather than one sentence. The description is of the scene as drawn (counts, colors,
shapes, layout, background); the failures are named per rubric dimension; the text ends with the
per-dimension and overall scores.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from zreward.data.shapeworld.corrupt import DIMENSIONS, Failure
from zreward.data.shapeworld.grammar import (
    NUMBER_WORDS,
    Group,
    Spec,
    group_phrase,
    group_reference,
    join_phrases,
    plural,
    relation_clause,
)
from zreward.data.shapeworld.render import Scene


def _pick(rng: np.random.Generator, options) -> str:
    return options[int(rng.integers(len(options)))]


def _degree(severity: float) -> str:
    return "noticeably" if severity < 0.67 else ("clearly" if severity < 0.84 else "heavily")


def drawn_groups(scene: Scene) -> dict[int, Group]:
    """The groups as drawn, keyed by prompt group (-1 and below: objects nobody asked for)."""
    counts = Counter((o.group, o.color, o.shape, o.size) for o in scene.objects)
    out, extra = {}, -1
    for (g, color, shape, size), n in counts.items():
        key = g if g >= 0 else extra
        extra -= g < 0
        out[key] = Group(n, color, shape, size)
    return out


def _asked(spec: Spec, f: Failure) -> Group:
    return spec.groups[f.info["group"]]


def _alignment(spec: Spec, f: Failure, rng) -> str:
    i = f.info
    if f.kind == "count_off":
        g = _asked(spec, f)
        return _pick(rng, [
            f"The prompt asks for {group_phrase(g)} but {NUMBER_WORDS[i['drawn']]} are drawn.",
            f"The count is wrong: {NUMBER_WORDS[i['drawn']]} {g.color} {plural(g.shape, i['drawn'])} "
            f"instead of {NUMBER_WORDS[i['asked']]}.",
        ])  # fmt: skip
    if f.kind == "wrong_color":
        g = _asked(spec, f)
        return _pick(rng, [
            f"The {plural(g.shape, g.count)} should be {i['asked']} but are {i['drawn']}.",
            f"Wrong color: {i['drawn']} {plural(g.shape, g.count)} where the prompt says {i['asked']}.",
        ])  # fmt: skip
    if f.kind == "wrong_shape":
        g = _asked(spec, f)
        return _pick(rng, [
            f"The prompt wants {g.color} {plural(i['asked'], g.count)}, but {plural(i['drawn'], g.count)} are drawn.",
            f"Wrong shape: {g.color} {plural(i['drawn'], g.count)} instead of {plural(i['asked'], g.count)}.",
        ])  # fmt: skip
    if f.kind == "missing_group":
        g = _asked(spec, f)
        return _pick(rng, [
            f"{group_phrase(g).capitalize()} from the prompt {'is' if g.count == 1 else 'are'} missing entirely.",
            f"The image leaves out {group_phrase(g)}.",
        ])  # fmt: skip
    if f.kind == "extra_object":
        return _pick(rng, [
            f"There is an extra {i['color']} {i['shape']} that the prompt did not ask for.",
            f"An unrequested {i['color']} {i['shape']} has been added.",
        ])  # fmt: skip
    a, b = spec.groups[0], spec.groups[1]
    return _pick(rng, [
        f"The layout is wrong: {relation_sentence(a, b, i['drawn'])}, not {i['asked']} {_pronoun(b)}.",
        f"The prompt says {relation_clause(a, b, i['asked'])}, but the image has them the other way round.",
    ])  # fmt: skip


_RELATION_WORDS = {"left of": "to the left of", "right of": "to the right of", "above": "above", "below": "below"}


def _pronoun(g: Group) -> str:
    return "it" if g.count == 1 else "them"


def relation_sentence(a: Group, b: Group, relation: str) -> str:
    """'the circles are to the left of the square'."""
    ref_a, ref_b = group_reference(a, b), group_reference(b, a)
    return f"{ref_a} {'is' if a.count == 1 else 'are'} {_RELATION_WORDS[relation]} {ref_b}"


_FIDELITY = {
    "blur": ["The image is {d} blurry.", "Edges are {d} soft and out of focus."],
    "noise": ["Grainy noise {d} covers the image.", "The image is {d} noisy."],
    "jpeg": ["Blocky compression artifacts are {d} visible.", "JPEG blocking {d} degrades the image."],
    "smear": ["The shapes are {d} smeared and warped.", "Wavy distortions {d} bend the outlines."],
    "color_cast": ["A color cast {d} tints the whole image.", "The colors are {d} shifted by a tint."],
}
_AESTHETICS = {
    "off_centre": ["The objects are crowded into the {c} corner, leaving the rest empty.",
                   "The composition is off-centre, everything sits in the {c} corner."],
    "cramped": ["The objects are packed tightly together in the middle.",
                "The composition is cramped, with the objects squeezed into a small area."],
    "low_contrast": ["The object colors are {d} washed out against the background.",
                     "Contrast is {d} low; the objects fade into the background."],
    "clashing_palette": ["Garish stripes clash with the palette.",
                         "A clashing striped pattern covers the background."],
}
_PLAUSIBILITY = {
    "overlap": ["The {a} and the {b} interpenetrate.", "Two objects, the {a} and the {b}, overlap each other."],
    "fragmented": ["The {o} is broken into {n} fragments.", "The {o} is split apart by gaps."],
    "cut_off": ["The {o} is cut off at the {side} border.", "Part of the {o} falls outside the {side} edge."],
}
_CLEAN = {
    "alignment": ["Everything the prompt asks for is there.", "The image matches the prompt."],
    "fidelity": ["The rendering is crisp and clean.", "No blur, noise or artifacts."],
    "aesthetics": ["The composition is balanced.", "The layout and palette are pleasant."],
    "plausibility": ["All objects are whole and separate.", "The shapes are intact and nothing overlaps."],
}


def _failure_sentence(spec: Spec, f: Failure, rng) -> str:
    if f.dimension == "alignment":
        return _alignment(spec, f, rng)
    d = _degree(f.severity)
    if f.dimension == "fidelity":
        return _pick(rng, _FIDELITY[f.kind]).format(d=d)
    if f.dimension == "aesthetics":
        return _pick(rng, _AESTHETICS[f.kind]).format(d=d, c=f.info.get("corner", ""))
    i = f.info
    objs = i.get("objects", ["", ""])
    if f.kind == "overlap" and objs[0] == objs[1]:
        return _pick(rng, [f"Two {objs[0]}s interpenetrate.", f"Two {objs[0]}s overlap each other."])
    return _pick(rng, _PLAUSIBILITY[f.kind]).format(
        a=objs[0], b=objs[1], o=i.get("object", ""), n=i.get("pieces", 2), side=i.get("border", "")
    )


def describe(scene: Scene, rng) -> str:
    groups = drawn_groups(scene)
    phrases = [group_phrase(groups[k]) for k in sorted(groups, key=lambda k: (k < 0, abs(k)))]
    seen = join_phrases(phrases) if phrases else "nothing"
    text = _pick(rng, ["I see {s} on {b} background.", "The image shows {s} on {b} background.",
                       "There {v} {s}, on {b} background."])  # fmt: skip
    v = "is" if len(scene.objects) == 1 else "are"
    bg = ("an " if scene.background[0] in "aeiou" else "a ") + scene.background
    out = [text.format(s=seen, b=bg, v=v)]
    if scene.relation is not None and 0 in groups and 1 in groups:
        sentence = relation_sentence(groups[0], groups[1], scene.relation)
        out.append(_pick(rng, [f"{sentence[0].upper()}{sentence[1:]}.", f"In the layout, {sentence}.",
                               f"Spatially, {sentence}."]))  # fmt: skip
    return " ".join(out)


def rationale(spec: Spec, scene: Scene, failures: list[Failure], scores: dict[str, float], overall: float, rng) -> str:
    """The rationale text for one image; `scores` per dimension and `overall` on the rubric's scale."""
    parts = [describe(scene, rng)]
    for dim in DIMENSIONS:
        fs = [f for f in failures if f.dimension == dim]
        head = _pick(rng, [f"{dim.capitalize()}: ", f"As for {dim}: ", f"{dim.capitalize()} - "])
        body = " ".join(_failure_sentence(spec, f, rng) for f in fs) if fs else _pick(rng, _CLEAN[dim])
        parts.append(head + body)
    listed = ", ".join(f"{k} {v:g}" for k, v in scores.items())
    verdict = "good" if overall >= 4.6 else ("mediocre" if overall >= 3.6 else "poor")
    parts.append(_pick(rng, [
        f"Judgement: {listed}; overall {overall:.2f}, a {verdict} image.",
        f"Scores - {listed}. Overall {overall:.2f}: {verdict}.",
        f"Overall this is a {verdict} image ({overall:.2f}); {listed}.",
    ]))  # fmt: skip
    return " ".join(parts)
