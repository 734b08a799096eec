"""FuxiCTR's WideDeep and DNN, rebuilt from the layers of the fuxictr wheel.

The PyPI wheel ships fuxictr.pytorch (layers, BaseModel, trainer) but not the model zoo.
These two classes follow reczoo/FuxiCTR model_zoo/WideDeep/WideDeep_torch/src/WideDeep.py and
model_zoo/DNN/DNN_torch/src/DNN.py (commit 0245987f): the same layers, wiring and
initialisation. Runs in FuxiCTR's own venv (benchmarks/fuxictr/setup.sh), not widedeep's.
"""
from fuxictr.pytorch.layers import FeatureEmbedding, LogisticRegression, MLP_Block
from fuxictr.pytorch.models import BaseModel


class _BestEpoch:
    """Records the epoch of the best validation score (BaseModel logs it but keeps no count)."""

    best_epoch = 0

    def checkpoint_and_earlystop(self, logs, min_delta=1e-6):
        before = self._best_metric
        super().checkpoint_and_earlystop(logs, min_delta)
        if self._best_metric != before:
            self.best_epoch = self._epoch_index + 1


class WideDeep(_BestEpoch, BaseModel):
    """Logistic regression on the raw ids (wide) plus an MLP on their embeddings (deep)."""

    def __init__(self, feature_map, model_id="WideDeep", gpu=-1, learning_rate=1e-3,
                 embedding_dim=10, hidden_units=(64, 64, 64), hidden_activations="ReLU",
                 net_dropout=0, batch_norm=False, embedding_regularizer=None,
                 net_regularizer=None, **kwargs):
        super().__init__(feature_map, model_id=model_id, gpu=gpu,
                         embedding_regularizer=embedding_regularizer,
                         net_regularizer=net_regularizer, **kwargs)
        self.embedding_layer = FeatureEmbedding(feature_map, embedding_dim)
        self.lr_layer = LogisticRegression(feature_map, use_bias=False)
        self.dnn = MLP_Block(input_dim=embedding_dim * feature_map.num_fields, output_dim=1,
                             hidden_units=list(hidden_units),
                             hidden_activations=hidden_activations, output_activation=None,
                             dropout_rates=net_dropout, batch_norm=batch_norm)
        self.compile(kwargs["optimizer"], kwargs["loss"], learning_rate)
        self.reset_parameters()
        self.model_to_device()

    def forward(self, inputs):
        X = self.get_inputs(inputs)
        logit = self.lr_layer(X) + self.dnn(self.embedding_layer(X).flatten(start_dim=1))
        return {"y_pred": self.output_activation(logit)}


class DNN(_BestEpoch, BaseModel):
    """The deep part alone: an MLP on the concatenated field embeddings."""

    def __init__(self, feature_map, model_id="DNN", gpu=-1, learning_rate=1e-3,
                 embedding_dim=10, hidden_units=(64, 64, 64), hidden_activations="ReLU",
                 net_dropout=0, batch_norm=False, embedding_regularizer=None,
                 net_regularizer=None, **kwargs):
        super().__init__(feature_map, model_id=model_id, gpu=gpu,
                         embedding_regularizer=embedding_regularizer,
                         net_regularizer=net_regularizer, **kwargs)
        self.embedding_layer = FeatureEmbedding(feature_map, embedding_dim)
        self.mlp = MLP_Block(input_dim=feature_map.sum_emb_out_dim(), output_dim=1,
                             hidden_units=list(hidden_units),
                             hidden_activations=hidden_activations,
                             output_activation=self.output_activation,
                             dropout_rates=net_dropout, batch_norm=batch_norm)
        self.compile(kwargs["optimizer"], kwargs["loss"], learning_rate)
        self.reset_parameters()
        self.model_to_device()

    def forward(self, inputs):
        X = self.get_inputs(inputs)
        return {"y_pred": self.mlp(self.embedding_layer(X, flatten_emb=True))}
