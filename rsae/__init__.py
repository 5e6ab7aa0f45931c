"""rsae — sparse autoencoders with trainable rational activations (RSAE, arXiv 2606.14990).

Work in progress: the modules are being built (see docs/).
"""
