"""The Hydra config tree (YAML files) and its schema; Hydra imports this package before
composing, which registers the schema."""

from widedeep.conf.schema import register

register()
