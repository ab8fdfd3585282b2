"""Neural-network building blocks, PyTorch's torch.nn: Module, Parameter, layers, losses,
functional, init, utils."""
from . import functional, init, utils
from .module import Module
from .parameter import Buffer, Parameter
from .modules.activation import *  # noqa: F401,F403
from .modules.container import *  # noqa: F401,F403
from .modules.conv import *  # noqa: F401,F403
from .modules.dropout import *  # noqa: F401,F403
from .modules.linear import *  # noqa: F401,F403
from .modules.loss import *  # noqa: F401,F403
from .modules.normalization import *  # noqa: F401,F403
from .modules.pooling import *  # noqa: F401,F403
from .modules.rnn import *  # noqa: F401,F403
from .modules.sparse import *  # noqa: F401,F403
