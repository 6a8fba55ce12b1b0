/**
 * Test fixtures (not exported from index): synthetic platform trees for each kind.
 */
import type { TreeSpec } from './testTree.js';

/** Drupal 7 module: `.info` + `.module` (+ optional extra files). */
function d7module(dir: string, name: string, info: string, extra: TreeSpec = {}): TreeSpec {
  return { [`${dir}/${name}.info`]: info, [`${dir}/${name}.module`]: '<?php\n', ...extra };
}

/** A Drupal 7 platform with core, contrib, custom, a distribution profile, sites and a few broken bits. */
export function drupal7Tree(opts: { core?: string; views?: string; viewsSchema?: number } = {}): TreeSpec {
  const core = opts.core ?? '7.98';
  return {
    'index.php': '<?php\n',
    'includes/bootstrap.inc': `<?php\n/**\n * The current system version.\n */\ndefine('VERSION', '${core}');\n\ndefine('DRUPAL_CORE_COMPATIBILITY', '7.x');\n`,
    ...d7module('modules/system', 'system', 'name = System\npackage = Core\nversion = VERSION\ncore = 7.x\nrequired = TRUE\n', {
      'modules/system/system.install':
        '<?php\nfunction system_update_7080() {}\n\nfunction system_update_7081() {\n}\n// function system_update_9999() {}\nfunction system_update_last_removed() { return 7000; }\n',
    }),
    ...d7module(
      'modules/node',
      'node',
      `name = Node\npackage = Core\ncore = 7.x\n\n; Information added by Drupal.org packaging script\nversion = "${core}"\nproject = "drupal"\n`,
    ),
    ...d7module('modules/simpletest/tests', 'hidden_test', 'name = Hidden test\ncore = 7.x\nhidden = TRUE\n'),
    'themes/bartik/bartik.info': 'name = Bartik\ncore = 7.x\nversion = VERSION\nstylesheets[all][] = css/layout.css\n',
    'themes/engines/phptemplate/phptemplate.engine': '<?php\n',
    'profiles/standard/standard.info': 'name = Standard\ncore = 7.x\nversion = VERSION\ndependencies[] = block\n',
    'profiles/standard/standard.profile': '<?php\n',
    'profiles/testing/testing.info': 'name = Testing\ncore = 7.x\nhidden = TRUE\n',
    'profiles/testing/testing.profile': '<?php\n',
    'profiles/commerce_kickstart/commerce_kickstart.info':
      'name = Commerce Kickstart\ncore = 7.x\ndistribution_name = Commerce Kickstart\nexclusive = 1\nversion = "7.x-2.14"\nproject = "commerce_kickstart"\n',
    'profiles/commerce_kickstart/commerce_kickstart.profile': '<?php\n',
    ...d7module(
      'profiles/commerce_kickstart/modules/ck_blocks',
      'ck_blocks',
      'name = CK blocks\ncore = 7.x\nversion = "7.x-2.14"\nproject = "commerce_kickstart"\n',
    ),
    ...d7module(
      'sites/all/modules/contrib/views',
      'views',
      `name = Views\npackage = Views\ncore = 7.x\nversion = "${opts.views ?? '7.x-3.24'}"\nproject = "views"\n`,
      {
        'sites/all/modules/contrib/views/views.install': `<?php\nfunction views_update_7301() {}\nfunction views_update_${opts.viewsSchema ?? 7302}() {}\n`,
        'sites/all/modules/contrib/views/node_modules/junk/junk.info': 'name = Junk\n',
        'sites/all/modules/contrib/views/node_modules/junk/junk.module': '<?php\n',
      },
    ),
    ...d7module('sites/all/modules/custom/mymod', 'mymod', 'name = My module\ncore = 7.x\n'),
    ...d7module('sites/all/modules/contrib/broken', 'broken', ''),
    ...d7module('sites/all/modules/contrib/noname', 'noname', 'description = No name here\ncore = 7.x\n'),
    'sites/all/modules/contrib/orphan/orphan.module': '<?php\n// no info file: not a module\n',
    'sites/all/modules/.git/hooks/hook.info': 'name = Hook\n',
    'sites/all/modules/.git/hooks/hook.module': '<?php\n',
    'sites/all/themes/zen/zen.info': 'name = Zen\ncore = 7.x\nversion = "7.x-5.6"\nproject = "zen"\n',
    'sites/default/default.settings.php': '<?php\n',
    'sites/default/settings.php': '<?php\n',
    'sites/example.com/settings.php': '<?php\n',
    ...d7module('sites/example.com/modules/sitemod', 'sitemod', 'name = Site module\ncore = 7.x\nversion = "7.x-1.0"\n'),
    'sites/alias.example.com': { symlink: 'example.com' },
    'sites/nosettings.org/files/readme.txt': 'no settings.php here\n',
    'sites/sites.php': '<?php\n',
  };
}

/** A Drupal 6 platform with the core default profile and a contrib distribution profile. */
export function drupal6Tree(): TreeSpec {
  return {
    'includes/bootstrap.inc': "<?php\ndefine('DRUPAL_BOOTSTRAP_FULL', 8);\n",
    'modules/system/system.module': "<?php\n/**\n * The current system version.\n */\ndefine('VERSION', '6.38');\n",
    'modules/system/system.info': 'name = System\npackage = Core - required\nversion = VERSION\ncore = 6.x\n',
    'modules/system/system.install': '<?php\nfunction system_update_6054() {}\nfunction system_update_6055() {}\n',
    'modules/block/block.info': 'name = Block\npackage = Core - optional\nversion = VERSION\ncore = 6.x\n',
    'modules/block/block.module': '<?php\n',
    'themes/garland/garland.info': 'name = Garland\ncore = 6.x\nversion = VERSION\nengine = phptemplate\n',
    'themes/engines/phptemplate/phptemplate.engine': '<?php\n',
    'profiles/default/default.profile':
      "<?php\nfunction default_profile_modules() { return array('color'); }\nfunction default_profile_details() {\n  return array(\n    'name' => 'Drupal',\n    'description' => 'Select this profile to enable some basic Drupal functionality.'\n  );\n}\n",
    'profiles/openatrium/openatrium.profile':
      "<?php\nfunction openatrium_profile_details() {\n  return array('name' => st('Open Atrium'), 'description' => 'x');\n}\n",
    'profiles/openatrium/modules/atrium/atrium.info': 'name = Atrium\ncore = 6.x\nversion = "6.x-1.7"\nproject = "openatrium"\n',
    'profiles/openatrium/modules/atrium/atrium.module': '<?php\n',
    'sites/all/modules/cck/content.info': 'name = Content\ncore = 6.x\nversion = "6.x-2.9"\nproject = "cck"\npackage = CCK\n',
    'sites/all/modules/cck/content.module': '<?php\n',
    'sites/all/modules/cck/content.install': '<?php\nfunction content_update_6010() {}\n',
    'sites/default/settings.php': '<?php\n',
    'sites/d6.example.net/settings.php': '<?php\n',
  };
}

/** A Drupal 10 platform with core, contrib, a distribution profile, hidden test modules and broken bits. */
export function drupal10Tree(opts: { core?: string; token?: string } = {}): TreeSpec {
  const core = opts.core ?? '10.3.1';
  return {
    'index.php': '<?php\n',
    'composer.json': JSON.stringify({ name: 'drupal/recommended-project', description: 'Project template', type: 'project' }),
    'core/lib/Drupal.php': `<?php\n\nnamespace Drupal;\n\nclass Drupal {\n\n  /**\n   * The current system version.\n   */\n  const VERSION = '${core}';\n\n  const CORE_COMPATIBILITY = '8.x';\n}\n`,
    'core/core.services.yml': 'services: {}\n',
    'core/modules/system/system.info.yml': 'name: System\ntype: module\npackage: Core\nversion: VERSION\nrequired: true\n',
    'core/modules/system/system.install': '<?php\nfunction system_update_10100() {}\nfunction system_update_10201(&$sandbox) {}\n',
    'core/modules/system/tests/modules/system_test/system_test.info.yml': 'name: System test\ntype: module\npackage: Testing\nversion: VERSION\nhidden: true\n',
    'core/modules/system/tests/modules/visible_test/visible_test.info.yml': 'name: Visible test\ntype: module\npackage: Testing\nversion: VERSION\n',
    'core/modules/system/src/Tests/fake/fake.info.yml': 'name: Fake inside src\ntype: module\n',
    'core/modules/system/tests/fixtures/fixture_mod/fixture_mod.info.yml': 'name: [broken but never read\n',
    'core/modules/node/node.info.yml': 'name: Node\ntype: module\npackage: Core\nversion: VERSION\n',
    'core/themes/olivero/olivero.info.yml': 'name: Olivero\ntype: theme\nbase theme: false\nversion: VERSION\n',
    'core/themes/engines/twig/twig.info.yml': 'name: Twig\ntype: theme_engine\nversion: VERSION\n',
    'core/profiles/standard/standard.info.yml': 'name: Standard\ntype: profile\nversion: VERSION\n',
    'core/profiles/testing/testing.info.yml': 'name: Testing\ntype: profile\nversion: VERSION\nhidden: true\n',
    'profiles/contrib/myprofile/myprofile.info.yml': "name: My Profile\ntype: profile\nversion: '1.2.0'\ndistribution:\n  name: My Distro\n",
    'profiles/contrib/myprofile/modules/myprofile_feature/myprofile_feature.info.yml': "name: Feature\ntype: module\nversion: '1.2.0'\nproject: myprofile\n",
    'modules/contrib/token/token.info.yml': `name: Token\ntype: module\ncore_version_requirement: ^9 || ^10\n\n# Information added by Drupal.org packaging script on 2023-01-01\nversion: '${opts.token ?? '8.x-1.13'}'\nproject: 'token'\n`,
    'modules/contrib/token/token.install': '<?php\nfunction token_update_8001() {}\nfunction token_update_8002() {}\n',
    'modules/custom/mine/mine.info.yml': 'name: Mine\ntype: module\npackage: Custom\n',
    'modules/contrib/broken/broken.info.yml': 'name: [unclosed\ntype: module\n',
    'modules/contrib/notype/notype.info.yml': 'name: No type\n',
    'modules/contrib/token/node_modules/x/x.info.yml': 'name: X\ntype: module\n',
    'themes/contrib/gin/gin.info.yml': "name: Gin\ntype: theme\nversion: '8.x-3.0-rc10'\nproject: gin\n",
    'sites/default/settings.php': '<?php\n',
    'sites/mysite.org/settings.php': '<?php\n',
    'sites/mysite.org/modules/local/local.info.yml': 'name: Local\ntype: module\n',
  };
}

/** A WordPress tree. */
export function wordpressTree(version = '6.4.2'): TreeSpec {
  return {
    'index.php': '<?php\n',
    'wp-load.php': '<?php\n',
    'wp-settings.php': '<?php\n',
    'wp-includes/version.php': `<?php\n/**\n * The WordPress version string.\n *\n * @global string $wp_version\n */\n$wp_version = '${version}';\n\n$wp_db_version = 56657;\n`,
  };
}
