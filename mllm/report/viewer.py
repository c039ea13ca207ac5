"""The hallucination viewer: per benchmark image, every evaluated stage's caption with its
hallucinated object words marked, the ground-truth objects, and a filter by hallucinated object
(inline script, no network). Reading the captions is how a CHAIR number becomes believable."""

from __future__ import annotations

import html
import os
from collections import Counter
from collections.abc import Mapping

from mllm.data.images import load_image
from mllm.eval.benchmark import read_benchmark
from mllm.report.images import data_uri, thumbnail

THUMBNAIL_PX = 128
SEPARATOR = "|"  # between object names in data attributes ("traffic light" has a space)

SCRIPT = """
(function () {
  const filter = document.getElementById('hallucination-filter');
  const count = document.getElementById('hallucination-count');
  filter.addEventListener('change', function () {
    let shown = 0;
    document.querySelectorAll('.viewer-item').forEach(function (item) {
      const objects = item.dataset.objects ? item.dataset.objects.split('|') : [];
      const match = filter.value === '' || (filter.value === '*' ? objects.length > 0
        : objects.indexOf(filter.value) >= 0);
      item.hidden = !match;
      if (match) { shown += 1; }
    });
    count.textContent = shown;
  });
})();
"""


def benchmark_thumbnails(
    benchmark: str | os.PathLike, image_folder: str | os.PathLike | None, size: int = THUMBNAIL_PX
) -> dict[int, str]:
    """image_id -> small embedded image for every benchmark question (paths or base64 strings)."""
    thumbnails = {}
    for number, row in enumerate(read_benchmark(benchmark), start=1):
        image_id = int(row["image_id"])
        if image_id not in thumbnails:
            image = load_image(row["image"], image_folder, source=f"{benchmark}:{number}")
            thumbnails[image_id] = data_uri(thumbnail(image, size))
    return thumbnails


def highlighted_caption(entry: Mapping) -> str:
    """The analysed caption with hallucinated object words marked (their object in the tooltip)."""
    nodes = dict(zip(entry["mention_indices"], entry["node_words"], strict=True))
    marked = set(entry["hallucinated_indices"])
    words = [
        f'<span class="hallucinated" title="{html.escape(nodes.get(index, token))}">'
        f"{html.escape(token)}</span>"
        if index in marked
        else html.escape(token)
        for index, token in enumerate(entry["tokens"])
    ]
    return " ".join(words)


def viewer_section(chair: Mapping[tuple[str, str], Mapping], thumbnails: Mapping[int, str]) -> str:
    """One block per benchmark image (in benchmark order), one caption per stage · strategy."""
    if not chair:
        return ""
    images: dict[int, dict] = {}
    for (stage, strategy), metrics in chair.items():
        for entry in metrics["per_caption"]:
            item = images.setdefault(
                entry["image_id"], {"gt": entry["gt_objects"], "captions": [], "objects": set()}
            )
            item["captions"].append((f"{stage} · {strategy}", entry))
            item["objects"].update(node for _, node in entry["hallucinated_words"])
    counts = Counter(obj for item in images.values() for obj in item["objects"])
    options = "".join(
        f'<option value="{html.escape(obj)}">{html.escape(obj)} ({n} images)</option>'
        for obj, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    )
    blocks = []
    for image_id, item in images.items():
        source = thumbnails.get(image_id)
        picture = (
            f'<img class="thumb" alt="benchmark image {image_id}" src="{source}">' if source else ""
        )
        captions = "".join(
            f'<div class="viewer-caption"><span class="run">{html.escape(run)}</span> '
            f"{highlighted_caption(entry)}</div>"
            for run, entry in item["captions"]
        )
        gt = ", ".join(item["gt"]) or "none"
        objects = SEPARATOR.join(sorted(item["objects"]))
        blocks.append(
            f'<div class="viewer-item" data-objects="{html.escape(objects)}">{picture}'
            f'<div><div class="meta">image {image_id} · ground-truth objects: '
            f"{html.escape(gt)}</div>{captions}</div></div>"
        )
    return f"""<h2 id="viewer">Hallucination viewer</h2>
<p>Every benchmark image with each evaluated stage's caption (as the CHAIR analyzer tokenised
it); hallucinated object words are <span class="hallucinated">marked</span> (hover for the COCO
object they were mapped to).</p>
<p><label>Hallucinated object: <select id="hallucination-filter">
<option value="">all images</option><option value="*">any hallucination</option>{options}
</select></label> <span class="meta"><span id="hallucination-count">{len(images)}</span> images
shown</span></p>
<div class="viewer">{"".join(blocks)}</div>
<script>{SCRIPT}</script>"""
