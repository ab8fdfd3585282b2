"""Differentiable primitives, one family per module. Each op is an autograd Function;
the functions here are what ``pipeflow.<op>`` and the Tensor methods call."""
from . import activation, copy, elementwise, indexing, linalg, reduce, shape
from .activation import erf, gelu, leaky_relu, log_softmax, relu, sigmoid, softmax, softplus, tanh
from .copy import clone
from .elementwise import (add, clamp, div, floor_divide, isfinite, isinf, isnan, logical_not,
                          maximum, minimum, mul, pow, remainder, sub, where)
from .indexing import gather, index_put, index_select, masked_fill, one_hot, scatter_add
from .linalg import bmm, einsum, matmul, mm
from .reduce import (all_, amax, amin, any_, argmax, argmin, cumsum, logsumexp, max_, mean,
                     min_, norm, std, sum_, var)
from .shape import (broadcast_to, cat, chunk, expand, expand_as, flatten, flip, pad, permute,
                    repeat, reshape, split, squeeze, stack, t, transpose, unbind, unflatten,
                    unsqueeze, view)

E = elementwise


def _unary(fn_class):
    return lambda a: fn_class.apply(a)


neg, exp, log, log1p = _unary(E.Neg), _unary(E.Exp), _unary(E.Log), _unary(E.Log1p)
sqrt, rsqrt, sin, cos, abs = (_unary(E.Sqrt), _unary(E.Rsqrt), _unary(E.Sin), _unary(E.Cos),
                              _unary(E.Abs))
sign, floor, ceil, round, trunc = (_unary(E.Sign), _unary(E.Floor), _unary(E.Ceil),
                                   _unary(E.Round), _unary(E.Trunc))

# Tensor methods: name -> function taking the tensor first.
METHODS = dict(
    add=add, sub=sub, mul=mul, div=div, pow=pow, neg=neg, exp=exp, log=log, log1p=log1p,
    sqrt=sqrt, rsqrt=rsqrt, sin=sin, cos=cos, abs=abs, sign=sign, floor=floor, ceil=ceil,
    round=round, trunc=trunc, clamp=clamp, clip=clamp, maximum=maximum, minimum=minimum,
    floor_divide=floor_divide, remainder=remainder, isnan=isnan, isinf=isinf,
    isfinite=isfinite, logical_not=logical_not,
    relu=relu, leaky_relu=leaky_relu, sigmoid=sigmoid, tanh=tanh, gelu=gelu, softplus=softplus,
    erf=erf, softmax=softmax, log_softmax=log_softmax,
    sum=sum_, mean=mean, var=var, std=std, max=max_, min=min_, amax=amax, amin=amin,
    argmax=argmax, argmin=argmin, logsumexp=logsumexp, cumsum=cumsum, norm=norm,
    any=any_, all=all_,
    matmul=matmul, mm=mm, bmm=bmm,
    reshape=reshape, view=view, flatten=flatten, unflatten=unflatten, squeeze=squeeze,
    unsqueeze=unsqueeze, permute=permute, transpose=transpose, t=t, expand=expand,
    expand_as=expand_as, repeat=repeat, flip=flip, split=split, chunk=chunk, unbind=unbind,
    gather=gather, scatter_add=scatter_add, index_select=index_select, masked_fill=masked_fill,
    index_put=index_put, pad=pad,
)


def attach_methods(cls):
    for name, fn in METHODS.items():
        setattr(cls, name, fn)
    cls.where = lambda self, cond, other: where(cond, self, other)
    cls.view_as = lambda self, other: view(self, other._data.shape)
    cls.reshape_as = lambda self, other: reshape(self, other._data.shape)
    cls.type_as = lambda self, other: self.to(other.dtype)
