"""lipstudy: a reproducible study of 'Look into Person' (Gong et al., CVPR 2017)."""

__version__ = "0.1.0"
