// A "copy" button on every block of code of the page (the cells' code and code in prose, not outputs); offline.
document.addEventListener('DOMContentLoaded', () => {
  for (const block of document.querySelectorAll('article div.highlight')) {
    if (block.closest('.cell_output')) continue;
    const pre = block.querySelector('pre'); if (!pre) continue;
    const button = document.createElement('button');
    button.className = 'fastcb-copy'; button.type = 'button'; button.textContent = 'copy';
    button.title = 'Copy this code'; button.setAttribute('aria-label', 'Copy this code');
    button.addEventListener('click', async () => {
      const text = pre.innerText.replace(/\n$/, '');
      try { await navigator.clipboard.writeText(text); }
      catch (e) {   // no clipboard API (a page opened from a file): the old way
        const area = document.createElement('textarea'); area.value = text; document.body.appendChild(area);
        area.select(); document.execCommand('copy'); area.remove();
      }
      button.textContent = 'copied'; button.classList.add('copied');
      setTimeout(() => { button.textContent = 'copy'; button.classList.remove('copied'); }, 1500);
    });
    block.appendChild(button);
  }
});
