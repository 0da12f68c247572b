/* The compatibility report's only script: permalinks and filters.
 *
 * The page is complete without it (every section readable with scripts off); this adds:
 *  - permalinks: #ID opens the <details> around the element, clears filters hiding it and
 *    scrolls it below the sticky filter bar (#filters);
 *  - filters: <form id="filters" hidden> with <select name="release|device|dtype|phase|scope|verdict|...">
 *    (every named select of the form is a filter: the family pages add the case axes);
 *    an element with class "fi" is shown when, for every select with a value, it lacks
 *    data-<name> (any) or its space-separated tokens hold the value; others get `hidden`.
 *    Each section[data-filterable] gets ".fcount" = "N of M shown" (cells td/th not counted)
 *    and ".fempty" shown when nothing matches;
 *  - the filter state in the query string (?dtype=float16&phase=grad_input#ID), written
 *    with history.replaceState; where that is refused, in the hash as #f:dtype=float16&...
 *    Both forms are read on load.
 * No dependencies, no network; plain ES5 so that it runs from file:// in any browser.
 */
(function () {
  'use strict';
  var NAMES = []; // the form's select names, in order
  var HASH_STATE = 'f:';
  var doc = document;
  var form = doc.getElementById('filters');
  var selects = {}; // name -> <select>
  var items = []; // {el, tokens: {name: [..] | null}, cell, section}
  var sections = []; // {el, count, empty, items: [...]}
  var userScrolled = false;
  var placed = null;
  var ignoreHash = false; // the next hashchange is our own writing of the state

  function each(list, fn) {
    for (var i = 0; i < list.length; i++) {
      fn(list[i], i);
    }
  }

  function split(text) {
    return text.replace(/^\s+|\s+$/g, '').split(/\s+/);
  }

  // ------------------------------------------------------------------ filter state

  function readPairs(text, into) {
    each(text.split('&'), function (pair) {
      if (!pair) {
        return;
      }
      var at = pair.indexOf('=');
      var key = at < 0 ? pair : pair.slice(0, at);
      var value = at < 0 ? '' : pair.slice(at + 1);
      try {
        key = decodeURIComponent(key.replace(/\+/g, ' '));
        value = decodeURIComponent(value.replace(/\+/g, ' '));
      } catch (e) {
        return;
      }
      into[key] = value;
    });
    return into;
  }

  // the state in the hash (#f:...), where present, replaces the one in the query string
  function urlState() {
    var hash = location.hash.replace(/^#/, '');
    if (hash.indexOf(HASH_STATE) === 0) {
      return readPairs(hash.slice(HASH_STATE.length), {});
    }
    return readPairs(location.search.replace(/^\?/, ''), {});
  }

  function formState() {
    var state = {};
    each(NAMES, function (name) {
      if (selects[name] && selects[name].value) {
        state[name] = selects[name].value;
      }
    });
    return state;
  }

  function setSelects(state) {
    each(NAMES, function (name) {
      var select = selects[name];
      if (!select) {
        return;
      }
      var want = state[name] || '';
      var found = false;
      each(select.options, function (option) {
        if (option.value === want) {
          found = true;
        }
      });
      select.value = found ? want : '';
    });
  }

  function encode(state) {
    var parts = [];
    each(NAMES, function (name) {
      if (state[name]) {
        parts.push(encodeURIComponent(name) + '=' + encodeURIComponent(state[name]));
      }
    });
    return parts.join('&');
  }

  // The hash without a filter state: an element id, or ''.
  function idHash() {
    var hash = location.hash;
    return hash.indexOf('#' + HASH_STATE) === 0 ? '' : hash;
  }

  function writeUrl(state) {
    var query = encode(state);
    // other parameters in the query string are kept
    var other = readPairs(location.search.replace(/^\?/, ''), {});
    var keep = [];
    for (var key in other) {
      if (Object.prototype.hasOwnProperty.call(other, key) && NAMES.indexOf(key) < 0) {
        keep.push(encodeURIComponent(key) + (other[key] ? '=' + encodeURIComponent(other[key]) : ''));
      }
    }
    var search = keep.concat(query ? [query] : []).join('&');
    var url = location.pathname + (search ? '?' + search : '') + idHash();
    try {
      history.replaceState(history.state, '', url);
      return;
    } catch (e) {
      // refused (some browsers on file://): keep the state in the hash instead
    }
    var stale = false; // the query string still holds a filter: say explicitly what holds now
    for (var name in other) {
      if (Object.prototype.hasOwnProperty.call(other, name) && NAMES.indexOf(name) >= 0) {
        stale = true;
      }
    }
    var hash = query || stale ? '#' + HASH_STATE + query : idHash() || '#';
    try {
      history.replaceState(history.state, '', hash);
    } catch (e2) {
      ignoreHash = location.hash !== hash;
      location.replace(hash);
    }
  }

  // ------------------------------------------------------------------ filtering

  function collect() {
    each(doc.querySelectorAll('.fi'), function (el) {
      var tokens = {};
      each(NAMES, function (name) {
        var value = el.getAttribute('data-' + name);
        tokens[name] = value === null ? null : split(value);
      });
      var tag = el.tagName;
      items.push({ el: el, tokens: tokens, cell: tag === 'TD' || tag === 'TH' });
    });
    each(doc.querySelectorAll('section[data-filterable]'), function (el) {
      var section = { el: el, count: el.querySelector('.fcount'), empty: el.querySelector('.fempty'), items: [] };
      each(items, function (item) {
        if (!item.cell && el.contains(item.el)) {
          section.items.push(item);
        }
      });
      if (section.count && !section.count.hasAttribute('aria-live')) {
        section.count.setAttribute('aria-live', 'polite');
      }
      sections.push(section);
    });
  }

  function matches(item, state) {
    for (var name in state) {
      if (Object.prototype.hasOwnProperty.call(state, name) && state[name]) {
        var tokens = item.tokens[name];
        if (tokens && tokens.indexOf(state[name]) < 0) {
          return false;
        }
      }
    }
    return true;
  }

  // hidden by its own `hidden` or an ancestor's, up to (not including) `stop`
  function hiddenWithin(el, stop) {
    for (var node = el; node && node !== stop; node = node.parentElement) {
      if (node.hidden) {
        return true;
      }
    }
    return false;
  }

  function apply(state) {
    each(items, function (item) {
      var hide = !matches(item, state);
      if (item.el.hidden !== hide) {
        item.el.hidden = hide;
      }
    });
    each(sections, function (section) {
      var shown = 0;
      each(section.items, function (item) {
        if (!hiddenWithin(item.el, section.el)) {
          shown += 1;
        }
      });
      if (section.count) {
        section.count.textContent = shown + ' of ' + section.items.length + ' shown';
      }
      if (section.empty) {
        section.empty.hidden = shown !== 0;
      }
    });
  }

  function clearFilters() {
    setSelects({});
    apply({});
    writeUrl({});
  }

  // ------------------------------------------------------------------ permalinks

  function targetOf(hash) {
    var id = hash.replace(/^#/, '');
    if (!id || id.indexOf(HASH_STATE) === 0) {
      return null;
    }
    var el = doc.getElementById(id);
    if (!el) {
      try {
        el = doc.getElementById(decodeURIComponent(id));
      } catch (e) {
        el = null;
      }
    }
    return el;
  }

  // how far down the viewport a sticky or fixed filter bar reaches
  function headerBottom() {
    if (!form || form.hidden) {
      return 0;
    }
    var style = window.getComputedStyle(form);
    if (style.position !== 'sticky' && style.position !== 'fixed') {
      return 0;
    }
    var top = parseFloat(style.top);
    return (isNaN(top) ? 0 : top) + form.getBoundingClientRect().height;
  }

  function hiddenByFilter(el) {
    for (var node = el; node; node = node.parentElement) {
      if (node.hidden && node.classList && node.classList.contains('fi')) {
        return true;
      }
    }
    return false;
  }

  function place(el) {
    var gap = headerBottom() + 8;
    var top = el.getBoundingClientRect().top;
    if (Math.abs(top - gap) > 1) {
      window.scrollBy(0, top - gap);
    }
    placed = { el: el, top: el.getBoundingClientRect().top };
  }

  function reveal() {
    var el = targetOf(location.hash);
    if (!el) {
      return;
    }
    for (var node = el; node; node = node.parentElement) {
      if (node.tagName === 'DETAILS' && !node.open) {
        node.open = true;
      }
    }
    if (hiddenByFilter(el)) {
      clearFilters();
    }
    if (el.scrollIntoView) {
      el.scrollIntoView({ block: 'start', inline: 'nearest' }); // scrolls overflowing containers too
    }
    place(el);
    userScrolled = false;
    if (el.classList) {
      el.classList.add('target-flash');
      window.setTimeout(function () {
        el.classList.remove('target-flash');
      }, 2000);
    }
  }

  // ------------------------------------------------------------------ start

  if (form) {
    each(form.querySelectorAll('select[name]'), function (select) {
      if (!selects[select.name]) {
        NAMES.push(select.name);
        selects[select.name] = select;
      }
    });
    form.hidden = false;
    form.addEventListener('submit', function (event) {
      event.preventDefault();
    });
    form.addEventListener('change', function () {
      var state = formState();
      apply(state);
      writeUrl(state);
    });
    form.addEventListener('reset', function () {
      window.setTimeout(function () {
        var state = formState(); // the values the reset restored
        apply(state);
        writeUrl(state);
      }, 0);
    });
  }
  collect();
  var initial = urlState();
  setSelects(initial);
  apply(formState());
  reveal();

  window.addEventListener('hashchange', function () {
    if (ignoreHash) {
      ignoreHash = false;
      return;
    }
    if (location.hash.indexOf('#' + HASH_STATE) === 0) {
      setSelects(urlState());
      apply(formState());
      return;
    }
    reveal();
  });
  // a link to the fragment already in the address fires no hashchange: place it again
  doc.addEventListener('click', function (event) {
    var link = event.target && event.target.closest ? event.target.closest('a[href^="#"]') : null;
    if (link && link.getAttribute('href') === location.hash && !event.defaultPrevented) {
      window.setTimeout(reveal, 0);
    }
  });
  each(['wheel', 'touchstart', 'keydown', 'mousedown'], function (type) {
    window.addEventListener(
      type,
      function () {
        userScrolled = true;
      },
      { passive: true }
    );
  });
  // the browser's own scroll to the fragment (or late layout) may move the target after we
  // placed it: place it again once loaded, unless the reader has scrolled meanwhile
  window.addEventListener('load', function () {
    if (placed && !userScrolled && Math.abs(placed.el.getBoundingClientRect().top - placed.top) > 1) {
      place(placed.el);
    }
  });
})();
