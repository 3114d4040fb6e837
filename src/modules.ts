// The modules every virtual host runs, in install order. Each registers hooks and iq handlers on
// its host; removing a line here removes the feature.
import type { Module } from "./core/host.ts";
import { deliveryModule } from "./im/delivery.ts";
import { offlineModule } from "./im/offline.ts";
import { presenceModule } from "./im/presence.ts";
import { rosterModule } from "./im/roster.ts";
import { subscriptionsModule } from "./im/subscriptions.ts";
import { discoModule } from "./services/disco.ts";
import { pingModule, timeModule, versionModule } from "./services/basic_iq.ts";
import { vcardModule } from "./services/vcard.ts";
import { privateModule } from "./services/private.ts";
import { blockingModule } from "./services/blocking.ts";
import { carbonsModule } from "./services/carbons.ts";
import { registerModule } from "./services/register.ts";
import { archiveModule } from "./mam/account_archive.ts";
import { pepModule } from "./pep/module.ts";
import { pushModule } from "./push/module.ts";

export const MODULES: Module[] = [
  deliveryModule,
  offlineModule,
  presenceModule,
  subscriptionsModule,
  rosterModule,
  discoModule,
  pingModule,
  versionModule,
  timeModule,
  vcardModule,
  privateModule,
  blockingModule,
  carbonsModule,
  registerModule,
  archiveModule,
  pepModule,
  pushModule,
];
