"""The template engine: Liquid personalisation, HTML and text parts, tracked links.

- :mod:`~flowmail.templates.model`: ``Template`` (one version of a named template) and
  ``Rendered`` (what a render produces, with missing variables and fallback reasons).
- :mod:`~flowmail.templates.render`: ``render_message`` and ``message_variables``.
- :mod:`~flowmail.templates.validate`: save-time checks (``validate_template``).
- :mod:`~flowmail.templates.files`: templates as files (``load_template_dir``).
- :mod:`~flowmail.templates.links`: click tracking, open pixel, UTM, unsubscribe links.
- :mod:`~flowmail.templates.content`: the ``abandoned_cart`` and
  ``product_recommendation`` content providers.
- :mod:`~flowmail.templates.filters`: the ``local_date`` and ``money`` filters.
- :mod:`~flowmail.templates.liquid`: the Liquid environments (limits, missing values),
  also used by the engine for subjects and update values.
- :mod:`~flowmail.templates.markup`: CSS inlining, text parts, MJML.
- :mod:`~flowmail.templates.preview`: ``flowmail templates render``.

Stored versions live in :mod:`flowmail.store.templates`.
"""
