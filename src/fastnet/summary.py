"""model.summary(): the Keras table of layers, output shapes and parameter counts, and the dtype policy."""
from fastnet import mixed_precision


def _row(fields, widths):
    line = ""
    for field, end in zip(fields, widths):
        line = (line + " " + str(field))[:end - 1].ljust(end)
    return line.rstrip()


def policies_text(layers):
    """The layers' dtype policy ('float32', 'mixed_bfloat16 (portable bfloat16 products)'), or per policy the
    layers that compute under it when they differ."""
    by_policy = {}
    for layer in layers:
        by_policy.setdefault(layer.dtype_policy.name, []).append(layer.name)
    if len(by_policy) <= 1:
        return mixed_precision.describe(layers[0].dtype_policy if layers else mixed_precision.global_policy())
    return "; ".join(f"{mixed_precision.describe(mixed_precision.Policy(name))}: {', '.join(names)}"
                     for name, names in by_policy.items())


def summary_text(model, line_length=65):
    widths = [int(line_length * p) for p in (0.45, 0.85, 1.0)]
    lines = [f'Model: "{model.name}"', "_" * line_length, _row(["Layer (type)", "Output Shape", "Param #"], widths),
             "=" * line_length]
    for i, layer in enumerate(model.layers):
        lines.append(_row([f"{layer.name} ({type(layer).__name__})", layer.output_shape, layer.count_params()],
                          widths))
        lines.append("" if i + 1 < len(model.layers) else "=" * line_length)
    total = model.count_params()
    lines += [f"Total params: {total:,}", f"Trainable params: {total:,}", "Non-trainable params: 0",
              f"Dtype policy: {policies_text(model.layers)}", "_" * line_length]
    return "\n".join(lines)
