"""ShapeWorld: a synthetic text-to-image preference world, deterministic from a seed.

Prompts come from a compositional grammar (grammar.py); a simulated generator renders each prompt
several times with injected failures per rubric dimension (render.py, corrupt.py); simulated
annotators score every image and prefer within pairs of one prompt (annotators.py); each image has a
templated rationale (rationale.py); a classical computer-vision oracle judges alignment from pixels
(oracle.py). `generate_shapeworld` writes the train / val / test / ood splits (generate.py).
"""

from zreward.data.shapeworld.annotators import AnnotatorPanel, noise_ceiling
from zreward.data.shapeworld.corrupt import Failure, build_scene, sample_failures, true_scores
from zreward.data.shapeworld.fidelity import degrade
from zreward.data.shapeworld.generate import SPLITS, generate_shapeworld
from zreward.data.shapeworld.grammar import HELD_OUT, Group, Spec, prompt_text, sample_spec
from zreward.data.shapeworld.oracle import OracleResult, alignment_agreement, detect, judge
from zreward.data.shapeworld.render import Scene, SceneObject, render

__all__ = [
    "HELD_OUT",
    "SPLITS",
    "AnnotatorPanel",
    "Failure",
    "Group",
    "OracleResult",
    "Scene",
    "SceneObject",
    "Spec",
    "alignment_agreement",
    "build_scene",
    "degrade",
    "detect",
    "generate_shapeworld",
    "judge",
    "noise_ceiling",
    "prompt_text",
    "render",
    "sample_failures",
    "sample_spec",
    "true_scores",
]
