"""Train a network on scikit-learn's handwritten digits and report accuracy and speed.

    python -m fastnn.demo [--epochs 30] [--threads N]
"""
import argparse
import time

import fastnn as fn


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError:
        raise SystemExit("the demo uses scikit-learn's digits: pip install 'fastnn[demo]'")

    X, y = load_digits(return_X_y=True)
    X = X / 16.0                                  # pixels 0..16 -> 0..1
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, random_state=0, stratify=y)
    fn.show_config()
    print(f"\ndigits: {len(X_train)} training and {len(X_test)} test images of 8x8 pixels")

    net = fn.Network([fn.Dense(64, 128, activation="relu", init="he_uniform"),
                      fn.Dense(128, 10, activation="softmax")],
                     loss="cross_entropy", seed=0)
    print(net, "\n")
    t0 = time.perf_counter()
    net.fit(X_train, y_train, epochs=args.epochs, batch_size=args.batch_size,
            optimizer=fn.SGD(lr=0.1, momentum=0.9), validation_data=(X_test, y_test),
            verbose=1, n_threads=args.threads)
    seconds = time.perf_counter() - t0
    result = net.evaluate(X_test, y_test)
    n_seen = args.epochs * len(X_train)
    print(f"\ntest accuracy: {result['accuracy']:.4f}  test loss: {result['loss']:.4f}")
    print(f"training: {seconds:.2f} s for {args.epochs} epochs "
          f"({n_seen / seconds:,.0f} samples/s, including validation)")
    return 0 if result["accuracy"] > 0.9 else 1


if __name__ == "__main__":
    raise SystemExit(main())
