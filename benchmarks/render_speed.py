"""How long the houses renderer takes for 1,000 images (median of repeats, inference mode).

Run: ``python benchmarks/render_speed.py [--n 1000] [--repeats 20] [--threads N]``; prints one line.
"""

import argparse
import statistics
import time

import torch

from pplevelset.worlds.houses.priors import houses_circles_prior
from pplevelset.worlds.houses.render import draw


def median_ms(function, repeats: int) -> float:
    function()  # warm the caches (pixel grid, blur matrix, allocator)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    z = houses_circles_prior().sample((args.n,))
    with torch.inference_mode():
        plain = median_ms(lambda: draw(z, circle=False), args.repeats)
        circled = median_ms(lambda: draw(z, circle=True), args.repeats)
    print(
        f"render {args.n} images 64x64: {plain:.1f} ms houses, {circled:.1f} ms with circles "
        f"(median of {args.repeats}, {torch.get_num_threads()} threads, torch {torch.__version__})"
    )


if __name__ == "__main__":
    main()
