"""The review sheet, above tagging: a tag run's output read back and joined with its posts (entries),
thumbnails as data: URIs (thumbs), and the one-file HTML page a person reviews and saves a training CSV
from (sheet, with its CSS, JS and HTML template in assets/). No torch."""
