"""The recipe layer: the TensorFlow-free schema every other layer reads.

``choices`` (the enums), ``params`` (how a parameter is declared and checked), ``registry``
(the plug-in mechanism), ``method`` / ``methods`` (method declarations), ``exporter`` /
``exporters`` (artifact declarations), ``figures`` (the one definition of each figure),
``recipe`` (the validated record of a run), ``ordering`` (the planner), ``training`` (what
training costs) and ``artifacts`` (the run folder's file names).
"""

from compression.errors import RecipeError
from compression.recipe.params import LayerSelection
from compression.recipe.recipe import Baseline, DatasetSpec, Recipe, Step, default_step, step_from_dict, step_to_dict
from compression.recipe.training import training_epochs

__all__ = ["Baseline", "DatasetSpec", "LayerSelection", "Recipe", "RecipeError", "Step", "default_step",
           "step_from_dict", "step_to_dict", "training_epochs"]
