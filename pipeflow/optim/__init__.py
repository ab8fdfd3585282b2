"""pipeflow.optim: optimizers and learning-rate schedulers with torch.optim's API, update
formulas and state-dict layout (so checkpoints can be saved in PyTorch's format).

    opt = pf.optim.AdamW(model.parameters(), lr=1e-3)
    sched = pf.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-2, total_steps=1000)
    for x, y in data:
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()
        sched.step()
"""
from . import lr_scheduler
from .adagrad import Adagrad
from .adam import Adam, AdamW
from .optimizer import (Optimizer, register_optimizer_step_post_hook,
                        register_optimizer_step_pre_hook)
from .rmsprop import RMSprop
from .sgd import SGD

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "lr_scheduler",
           "register_optimizer_step_pre_hook", "register_optimizer_step_post_hook"]
