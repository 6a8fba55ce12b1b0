/**
 * A generated Drupal-8+-shaped codebase for benchmarks: core/lib/Drupal.php with VERSION, core
 * modules, themes and profiles with their .info.yml files, contrib modules with .info.yml,
 * .module and .install files declaring hook_update_N, a distribution profile, sites/ with user
 * data under sites/default/files (excluded from the platform), and vendor/ code filling the tree
 * up to the requested number of platform files. Deterministic: the same options give the same
 * bytes. File sizes are mostly 0.3–6 KB with a few 40 KB ones (about 4 KB on average, like real
 * PHP code).
 */
import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

/** What was generated (user data under sites/default/files not counted). */
export interface DrupalTreeStats {
  files: number;
  bytes: number;
  coreVersion: string;
  coreModules: number;
  contribModules: number;
  infoFiles: number;
  /** A contrib module whose .info.yml a benchmark can edit (relative path of the file). */
  sampleInfo: string;
  /** A plain PHP file that no registry reads (relative path). */
  samplePhp: string;
}

const CORE_MODULES = (
  'action announcements_feed automated_cron ban basic_auth big_pipe block block_content book breakpoint ckeditor5 comment ' +
  'config config_translation contact content_moderation content_translation contextual datetime datetime_range dblog ' +
  'dynamic_page_cache editor field field_layout field_ui file filter forum help history image inline_form_errors jsonapi ' +
  'language layout_builder layout_discovery link locale media media_library menu_link_content menu_ui migrate ' +
  'migrate_drupal migrate_drupal_ui mysql node options page_cache path path_alias pgsql responsive_image rest search ' +
  'serialization settings_tray shortcut sqlite statistics syslog system taxonomy telephone text toolbar tour update ' +
  'user views views_ui workflows workspaces'
).split(' ');
const CORE_THEMES = ['olivero', 'claro', 'stark', 'stable9', 'starterkit_theme'];
const CORE_PROFILES = ['standard', 'minimal', 'demo_umami', 'testing'];
const CONTRIB = (
  'admin_toolbar pathauto token ctools metatag redirect webform paragraphs entity_reference_revisions field_group ' +
  'google_analytics captcha recaptcha honeypot simple_sitemap xmlsitemap devel views_bulk_operations smtp ' +
  'linkit entity_browser inline_entity_form config_split config_ignore search_api search_api_solr facets ' +
  'better_exposed_filters layout_builder_restrictions video_embed_field colorbox crop image_widget_crop ' +
  'focal_point svg_image media_entity_browser address geofield leaflet commerce profile state_machine ' +
  'entity rules flag votingapi fivestar scheduler diff'
).split(' ');

/** Builds the tree at `root` (created). */
export function makeDrupal8Tree(root: string, opts: { files?: number; coreVersion?: string } = {}): DrupalTreeStats {
  const target = opts.files ?? 20_000;
  const version = opts.coreVersion ?? '10.3.6';
  const stats: DrupalTreeStats = {
    files: 0,
    bytes: 0,
    coreVersion: version,
    coreModules: 0,
    contribModules: 0,
    infoFiles: 0,
    sampleInfo: '',
    samplePhp: '',
  };
  const filler = fillerText();
  let n = 0;
  const made = new Set<string>();
  const put = (rel: string, content: string | Buffer, count = true) => {
    const abs = join(root, rel);
    const d = dirname(abs);
    if (!made.has(d)) {
      mkdirSync(d, { recursive: true });
      made.add(d);
    }
    writeFileSync(abs, content);
    if (!count) return;
    stats.files++;
    stats.bytes += typeof content === 'string' ? Buffer.byteLength(content) : content.length;
    if (rel.endsWith('.info.yml')) stats.infoFiles++;
  };
  /** Code-looking content of a deterministic, mostly small size, unique per path. */
  const code = (rel: string, lang: 'php' | 'js' | 'css' | 'twig' | 'yml' = 'php') => {
    const i = n++;
    const h = createHash('sha256').update(rel).digest();
    const size = i % 97 === 0 ? 40_000 : 300 + (h.readUInt32LE(0) % 5_700);
    const head =
      lang === 'php' ? `<?php\n\n/**\n * @file\n * ${rel}\n */\n\n` : lang === 'yml' ? `# ${rel}\n` : lang === 'twig' ? `{# ${rel} #}\n` : `/* ${rel} */\n`;
    const off = h.readUInt32LE(4) % (filler.length - size);
    return head + filler.slice(off, off + Math.max(0, size - head.length));
  };

  // top level
  put(
    'index.php',
    "<?php\n\nuse Drupal\\Core\\DrupalKernel;\n\n$autoloader = require_once 'autoload.php';\n$kernel = new DrupalKernel('prod', $autoloader);\n",
  );
  put('autoload.php', "<?php\n\nreturn require __DIR__ . '/vendor/autoload.php';\n");
  put('update.php', code('update.php'));
  put('robots.txt', 'User-agent: *\nCrawl-delay: 10\n');
  put(
    '.htaccess',
    '<FilesMatch "\\.(engine|inc|install|make|module|profile|po|sh|.*sql|theme|twig|tpl(\\.php)?|xtmpl|yml)(~|\\.sw[op]|\\.bak|\\.orig|\\.save)?$">\n  Require all denied\n</FilesMatch>\n',
  );
  put('web.config', '<configuration></configuration>\n');
  put('composer.json', JSON.stringify({ name: 'drupal/recommended-project', type: 'project', require: { 'drupal/core-recommended': `^${version}` } }, null, 2));

  // core
  put(
    'core/lib/Drupal.php',
    `<?php\n\nnamespace {\n\n/**\n * Static Service Container wrapper.\n */\nclass Drupal {\n\n  /**\n   * The current system version.\n   */\n  const VERSION = '${version}';\n\n  const CORE_COMPATIBILITY = '8.x';\n\n  const CORE_MINIMUM_SCHEMA_VERSION = 8000;\n}\n\n}\n`,
  );
  put('core/core.services.yml', code('core/core.services.yml', 'yml'));
  put('core/core.libraries.yml', code('core/core.libraries.yml', 'yml'));
  put('core/composer.json', JSON.stringify({ name: 'drupal/core', type: 'drupal-core', version }, null, 2));
  for (const inc of ['bootstrap', 'common', 'database', 'errors', 'form', 'install', 'theme', 'update', 'utility', 'batch']) {
    put(`core/includes/${inc}.inc`, code(`core/includes/${inc}.inc`));
  }
  put('core/install.php', code('core/install.php'));
  put('core/rebuild.php', code('core/rebuild.php'));
  for (let i = 0; i < 2600; i++) {
    const area = i % 3 === 0 ? 'Component' : 'Core';
    put(`core/lib/Drupal/${area}/Sub${Math.floor(i / 20)}/Class${i}.php`, code(`core/lib/${i}`));
  }
  for (let i = 0; i < 400; i++)
    put(`core/assets/vendor/lib${Math.floor(i / 25)}/file${i}.${i % 2 ? 'js' : 'css'}`, code(`core/assets/${i}`, i % 2 ? 'js' : 'css'));

  const module = (dir: string, name: string, info: string, opts2: { files: number; updates: number[] }) => {
    put(`${dir}/${name}.info.yml`, info);
    put(`${dir}/${name}.module`, `<?php\n\n/**\n * @file\n * ${name} hooks.\n */\n\nfunction ${name}_help($route_name) {\n  return NULL;\n}\n`);
    put(
      `${dir}/${name}.install`,
      `<?php\n\n/**\n * @file\n * Install, update and uninstall functions for ${name}.\n */\n\n` +
        opts2.updates.map((u) => `/**\n * Update ${u}.\n */\nfunction ${name}_update_${u}() {\n}\n\n`).join(''),
    );
    put(`${dir}/${name}.services.yml`, code(`${dir}/services`, 'yml'));
    put(`${dir}/${name}.routing.yml`, code(`${dir}/routing`, 'yml'));
    put(`${dir}/${name}.permissions.yml`, code(`${dir}/permissions`, 'yml'));
    put(`${dir}/${name}.libraries.yml`, code(`${dir}/libraries`, 'yml'));
    put(`${dir}/config/schema/${name}.schema.yml`, code(`${dir}/schema`, 'yml'));
    const kinds: [string, 'php' | 'js' | 'css' | 'twig' | 'yml', string][] = [
      ['src/Plugin/Block', 'php', 'php'],
      ['src/Controller', 'php', 'php'],
      ['src/Form', 'php', 'php'],
      ['src/Entity', 'php', 'php'],
      ['templates', 'twig', 'html.twig'],
      ['css', 'css', 'css'],
      ['js', 'js', 'js'],
      ['config/install', 'yml', 'yml'],
      ['tests/src/Functional', 'php', 'php'],
      ['tests/src/Kernel', 'php', 'php'],
    ];
    for (let f = 0; f < opts2.files; f++) {
      const [sub, lang, ext] = kinds[f % kinds.length] as [string, 'php', string];
      put(`${dir}/${sub}/${name}_${f}.${ext}`, code(`${dir}/${sub}/${f}`, lang));
    }
  };

  for (const [i, m] of CORE_MODULES.entries()) {
    const dir = `core/modules/${m}`;
    module(dir, m, `name: '${m.replace(/_/g, ' ')}'\ntype: module\ndescription: 'Core module ${m}.'\npackage: Core\nversion: VERSION\n`, {
      files: 52,
      updates: [8001 + (i % 5), 9301, 10100 + (i % 3)],
    });
    // core test modules: hidden, like Drupal's own
    put(`${dir}/tests/modules/${m}_test/${m}_test.info.yml`, `name: '${m} test'\ntype: module\npackage: Testing\nversion: VERSION\nhidden: true\n`);
    stats.coreModules++;
  }
  for (const t of CORE_THEMES) {
    put(`core/themes/${t}/${t}.info.yml`, `name: ${t}\ntype: theme\nbase theme: false\nversion: VERSION\n`);
    put(`core/themes/${t}/${t}.theme`, code(`core/themes/${t}/theme`));
    for (let f = 0; f < 70; f++) {
      const sub = ['templates/layout', 'templates/content', 'css/components', 'js', 'images'][f % 5] as string;
      put(
        `core/themes/${t}/${sub}/${t}_${f}.${f % 5 < 2 ? 'html.twig' : f % 5 === 2 ? 'css' : f % 5 === 3 ? 'js' : 'svg'}`,
        code(`core/themes/${t}/${f}`, 'twig'),
      );
    }
  }
  for (const p of CORE_PROFILES) {
    put(`core/profiles/${p}/${p}.info.yml`, `name: ${p}\ntype: profile\ndescription: 'Core profile ${p}.'\nversion: VERSION\ninstall:\n  - node\n  - block\n`);
    put(`core/profiles/${p}/${p}.profile`, `<?php\n\nfunction ${p}_form_install_configure_form_alter(&$form) {\n}\n`);
    put(`core/profiles/${p}/${p}.install`, `<?php\n\nfunction ${p}_install() {\n}\n\nfunction ${p}_update_10001() {\n}\n`);
    for (let f = 0; f < 10; f++) put(`core/profiles/${p}/config/install/${p}.${f}.yml`, code(`core/profiles/${p}/${f}`, 'yml'));
  }

  // contrib modules (some with submodules), a contrib theme, a distribution profile
  for (const [i, m] of CONTRIB.entries()) {
    const dir = `modules/contrib/${m}`;
    const v = i % 2 ? `8.x-1.${i}` : `2.0.${i}`;
    module(
      dir,
      m,
      `name: '${m}'\ntype: module\ndescription: 'Contrib ${m}.'\ncore_version_requirement: ^9 || ^10\npackage: Contrib\n\n# Information added by Drupal.org packaging script\nversion: '${v}'\nproject: '${m}'\ndatestamp: ${1700000000 + i}\n`,
      {
        files: 40,
        updates: [8001, 8002 + (i % 7), 9001 + i],
      },
    );
    stats.contribModules++;
    if (i % 4 === 0) {
      const sub = `${m}_ui`;
      module(`${dir}/modules/${sub}`, sub, `name: '${sub}'\ntype: module\npackage: Contrib\nversion: '${v}'\nproject: '${m}'\n`, { files: 8, updates: [8001] });
      stats.contribModules++;
    }
  }
  if (!stats.sampleInfo) stats.sampleInfo = `modules/contrib/${CONTRIB[3]}/${CONTRIB[3]}.info.yml`;
  stats.samplePhp = `modules/contrib/${CONTRIB[5]}/src/Controller/${CONTRIB[5]}_1.php`;
  for (const t of ['bootstrap5', 'gin']) {
    put(
      `themes/contrib/${t}/${t}.info.yml`,
      `name: ${t}\ntype: theme\nbase theme: stable9\ncore_version_requirement: ^10\nversion: '3.0.9'\nproject: '${t}'\n`,
    );
    for (let f = 0; f < 60; f++) put(`themes/contrib/${t}/templates/${t}_${f}.html.twig`, code(`themes/contrib/${t}/${f}`, 'twig'));
  }
  put(
    'profiles/contrib/bench_distro/bench_distro.info.yml',
    `name: 'Bench distribution'\ntype: profile\ncore_version_requirement: ^10\nversion: '1.4.0'\ndistribution:\n  name: 'Bench Distro'\ninstall:\n  - node\n`,
  );
  put('profiles/contrib/bench_distro/bench_distro.profile', '<?php\n');
  put('profiles/contrib/bench_distro/bench_distro.install', '<?php\n\nfunction bench_distro_update_10001() {\n}\n');

  // sites: code, and user data (excluded from the platform, not counted)
  put('sites/default/default.settings.php', code('sites/default/default.settings.php'));
  put('sites/default/default.services.yml', code('sites/default/default.services.yml', 'yml'));
  put('sites/example.sites.php', code('sites/example.sites.php'));
  put('sites/example.settings.local.php', code('sites/example.settings.local.php'));
  put('sites/development.services.yml', code('sites/development.services.yml', 'yml'));
  for (let f = 0; f < 50; f++) put(`sites/default/files/styles/thumb/upload${f}.jpg`, code(`upload${f}`, 'css'), false);

  // vendor/ fills the tree up to the requested size
  let v = 0;
  while (stats.files < target) {
    const pkg = Math.floor(v / 150);
    put(`vendor/vendor${Math.floor(pkg / 4)}/package${pkg}/src/Dir${Math.floor((v % 150) / 25)}/Class${v}.php`, code(`vendor/${v}`));
    v++;
  }
  return stats;
}

/** ~256 KB of PHP-looking text (deterministic). */
function fillerText(): string {
  const words = [
    '$this',
    '->get(',
    'return',
    'function',
    'public',
    'static',
    '$value',
    'array(',
    'foreach',
    'if (',
    'NULL',
    '$entity',
    '::create(',
    'protected',
    '$container',
    'string',
    'implements',
    'namespace',
    'use',
    'Drupal',
  ];
  let out = '';
  let x = 1;
  while (out.length < 256 * 1024) {
    x = (x * 1103515245 + 12345) & 0x7fffffff;
    out += words[x % words.length];
    out += x % 11 === 0 ? ';\n    ' : ' ';
  }
  return out;
}
