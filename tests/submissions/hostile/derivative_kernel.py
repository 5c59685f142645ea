# Autograd's own derivative formula, called by name from torch's namespace: no graph, no
# backward pass, no .grad (here softmax's backward, over a size-1 dimension). Seen at run time,
# and the name sends the file to review.
# expect-gradient: dnorm_logits
# expect-status: integrity
# expect-message: computed with autograd
# expect-integrity: autograd
# expect-review: derivative formulas
import torch


def dnorm_logits(dcounts, counts):
    kernel = torch._softmax_backward_data(dcounts.unsqueeze(-1), counts.unsqueeze(-1), -1,
                                          torch.float32)
    return dcounts * counts + 0 * kernel.squeeze(-1)
