"""rational_approx — rational approximation of sparsity gates (|x|, ReLU, JumpReLU, sign, TopK gates)."""
