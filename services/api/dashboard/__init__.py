"""The public dashboard: static pages at ``/dashboard`` that read only the public JSON API.

The pages are files inside the package (listed in pyproject's package-data), the chart library
included, so they work on a network without the internet.
"""
